/* streamcon: a stream consumer on rabbitmq-c, for benchmarks/stream.py.
 *
 *   streamcon --port P --queue Q --count N [--prefetch F] [--ack-every K] [--offset first]
 *
 * basic.qos prefetch F (default 1000), basic.consume with x-stream-offset (a string: first,
 * last, next, or an interval such as 1h), acks (multiple) every K deliveries (default 100),
 * stops after N deliveries and prints one line:
 *
 *   mode=stream count=N secs=S rate=R first_offset=O
 *
 * The clock starts at the first delivery.
 * Build: cc -O2 -o streamcon streamcon.c -lrabbitmq  (benchmarks/build_amqperf.sh does it).
 */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "streamcon: %s\n", what);
  exit(2);
}

static void check(amqp_rpc_reply_t r, const char *what) {
  if (r.reply_type == AMQP_RESPONSE_NORMAL) return;
  if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
    amqp_channel_close_t *m = r.reply.decoded;
    fprintf(stderr, "streamcon: %s: channel closed %d %.*s\n", what, m->reply_code,
            (int)m->reply_text.len, (char *)m->reply_text.bytes);
  } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
             r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
    amqp_connection_close_t *m = r.reply.decoded;
    fprintf(stderr, "streamcon: %s: connection closed %d %.*s\n", what, m->reply_code,
            (int)m->reply_text.len, (char *)m->reply_text.bytes);
  } else {
    fprintf(stderr, "streamcon: %s failed\n", what);
  }
  exit(2);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *queue = "stream", *offset = "first";
  int port = 5672, prefetch = 1000, ack_every = 100;
  long count = 100000;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) die("option without a value");
    if (!strcmp(a, "--host")) host = v;
    else if (!strcmp(a, "--port")) port = atoi(v);
    else if (!strcmp(a, "--queue")) queue = v;
    else if (!strcmp(a, "--count")) count = atol(v);
    else if (!strcmp(a, "--prefetch")) prefetch = atoi(v);
    else if (!strcmp(a, "--ack-every")) ack_every = atoi(v);
    else if (!strcmp(a, "--offset")) offset = v;
    else die("unknown option");
    i++;
  }
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t *sock = amqp_tcp_socket_new(conn);
  if (!sock || amqp_socket_open(sock, host, port)) die("cannot connect");
  check(amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest"), "login");
  amqp_channel_open(conn, 1);
  check(amqp_get_rpc_reply(conn), "channel.open");
  amqp_basic_qos(conn, 1, 0, (uint16_t)prefetch, 0);
  check(amqp_get_rpc_reply(conn), "basic.qos");
  amqp_table_entry_t entry;
  entry.key = amqp_cstring_bytes("x-stream-offset");
  entry.value.kind = AMQP_FIELD_KIND_UTF8;
  entry.value.value.bytes = amqp_cstring_bytes(offset);
  amqp_table_t arguments = {1, &entry};
  amqp_basic_consume(conn, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0, arguments);
  check(amqp_get_rpc_reply(conn), "basic.consume");
  long got = 0;
  long long first = -1;
  double t0 = 0;
  while (got < count) {
    amqp_envelope_t env;
    amqp_maybe_release_buffers(conn);
    amqp_rpc_reply_t r = amqp_consume_message(conn, &env, NULL, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) check(r, "consume");
    if (got == 0) {
      t0 = now();
      amqp_table_t *h = &env.message.properties.headers;
      for (int i = 0; i < h->num_entries; i++)
        if (h->entries[i].key.len == 15 && !memcmp(h->entries[i].key.bytes, "x-stream-offset", 15))
          first = h->entries[i].value.value.i64;
    }
    got++;
    if (got % ack_every == 0 || got == count) amqp_basic_ack(conn, 1, env.delivery_tag, 1);
    amqp_destroy_envelope(&env);
  }
  double dt = now() - t0;
  printf("mode=stream count=%ld secs=%.3f rate=%.0f first_offset=%lld\n", got, dt,
         dt > 0 ? got / dt : 0, first);
  amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
  return 0;
}
