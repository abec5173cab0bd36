/* confirmlat: publisher-confirm latency of persistent messages, on rabbitmq-c.
 *
 *   confirmlat pub   --port P --queue Q --count N [--size B] [--window W] [--rate R]
 *                    [--declare] [--durable] [--transient] [--stall S]
 *   confirmlat count --port P --queue Q
 *
 * pub publishes N persistent messages (delivery mode 2; --transient for 1) of B bytes (default
 * 1024) to the default exchange with routing key Q, on a channel in confirm mode. At most W
 * messages are unconfirmed at any time (default 500, 0 = no limit) and, with --rate, at most R
 * are published per second. It records, per message, the time from its basic.publish to the
 * basic.ack that covers it (a multiple ack covers every earlier tag) and prints one line:
 *
 *   mode=pub count=N secs=S rate=R p50_ms= p99_ms= max_ms= nacks=K
 *
 * Acks are read between publishes as well as while waiting, so a window-limited run measures
 * the broker, not the client. The body starts with a CLOCK_MONOTONIC timestamp, as amqperf's
 * does, so an amqperf consumer reports end-to-end latency on the same messages. If no ack
 * arrives for S seconds (default 60) while messages are outstanding, it gives up (exit 3).
 *
 * count declares Q passively and prints "queue=Q messages=M consumers=C"; it exits with 4 if
 * the queue does not exist (yet) and 2 if the broker cannot be reached or refuses the login.
 *
 * Build: cc -O2 -o confirmlat confirmlat.c -lrabbitmq  (benchmarks/build_amqperf.sh does it).
 */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(int code, const char *what) {
  fprintf(stderr, "confirmlat: %s\n", what);
  exit(code);
}

/* Exit with a message for an RPC that failed; 4 for 404 NOT_FOUND, else 2. */
static void check(amqp_rpc_reply_t r, const char *what) {
  if (r.reply_type == AMQP_RESPONSE_NORMAL) return;
  int code = 2;
  if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
    amqp_channel_close_t *m = r.reply.decoded;
    fprintf(stderr, "confirmlat: %s: channel closed %d %.*s\n", what, m->reply_code,
            (int)m->reply_text.len, (char *)m->reply_text.bytes);
    if (m->reply_code == AMQP_NOT_FOUND) code = 4;
  } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
             r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
    amqp_connection_close_t *m = r.reply.decoded;
    fprintf(stderr, "confirmlat: %s: connection closed %d %.*s\n", what, m->reply_code,
            (int)m->reply_text.len, (char *)m->reply_text.bytes);
  } else if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
    fprintf(stderr, "confirmlat: %s: %s\n", what, amqp_error_string2(r.library_error));
  } else {
    fprintf(stderr, "confirmlat: %s failed\n", what);
  }
  exit(code);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The confirm bookkeeping of one publishing run. Tags run from 1 to count. */
typedef struct {
  long count;
  double *sent;      /* sent[tag]: when basic.publish went out */
  char *done;        /* done[tag]: acked or nacked */
  double *latency;   /* latencies of the acked messages, in ack order */
  long acked, nacks; /* acked = entries in latency */
  long lowest;       /* lowest tag not yet confirmed */
  double last_ack;   /* when the last ack or nack arrived */
} confirms_t;

static long confirmed(const confirms_t *c) { return c->acked + c->nacks; }

static void settle(confirms_t *c, long tag, int ack, double t) {
  if (tag < 1 || tag > c->count || c->done[tag]) return;
  c->done[tag] = 1;
  if (ack)
    c->latency[c->acked++] = t - c->sent[tag];
  else
    c->nacks++;
}

static void on_confirm(confirms_t *c, uint64_t tag, int multiple, int ack) {
  double t = now();
  c->last_ack = t;
  if (multiple)
    for (long s = c->lowest; s <= (long)tag && s <= c->count; s++) settle(c, s, ack, t);
  else
    settle(c, (long)tag, ack, t);
  while (c->lowest <= c->count && c->done[c->lowest]) c->lowest++;
}

/* Read and handle one frame, waiting at most `wait` seconds (0: only what is already there).
 * Returns 1 if a frame was handled, 0 on timeout. */
static int pump(amqp_connection_state_t conn, confirms_t *c, double wait) {
  struct timeval tv;
  if (wait < 0) wait = 0;
  tv.tv_sec = (time_t)wait;
  tv.tv_usec = (suseconds_t)((wait - (double)tv.tv_sec) * 1e6);
  amqp_frame_t f;
  int r = amqp_simple_wait_frame_noblock(conn, &f, &tv);
  if (r == AMQP_STATUS_TIMEOUT) return 0;
  if (r != AMQP_STATUS_OK) die(2, amqp_error_string2(r));
  if (f.frame_type == AMQP_FRAME_METHOD) {
    amqp_method_t *m = &f.payload.method;
    if (m->id == AMQP_BASIC_ACK_METHOD) {
      amqp_basic_ack_t *a = m->decoded;
      on_confirm(c, a->delivery_tag, a->multiple, 1);
    } else if (m->id == AMQP_BASIC_NACK_METHOD) {
      amqp_basic_nack_t *n = m->decoded;
      on_confirm(c, n->delivery_tag, n->multiple, 0);
    } else if (m->id == AMQP_CHANNEL_CLOSE_METHOD) {
      amqp_channel_close_t *cc = m->decoded;
      fprintf(stderr, "confirmlat: channel closed by broker: %d %.*s\n", cc->reply_code,
              (int)cc->reply_text.len, (char *)cc->reply_text.bytes);
      exit(2);
    } else if (m->id == AMQP_CONNECTION_CLOSE_METHOD) {
      amqp_connection_close_t *cc = m->decoded;
      fprintf(stderr, "confirmlat: connection closed by broker: %d %.*s\n", cc->reply_code,
              (int)cc->reply_text.len, (char *)cc->reply_text.bytes);
      exit(2);
    }
  }
  amqp_maybe_release_buffers(conn);
  return 1;
}

static void publish_all(amqp_connection_state_t conn, const char *queue, long count, int size,
                        int persistent, long window, double rate, double stall) {
  amqp_confirm_select(conn, 1);
  check(amqp_get_rpc_reply(conn), "confirm.select");
  confirms_t c = {count, calloc(count + 1, sizeof(double)), calloc(count + 1, 1),
                  calloc(count + 1, sizeof(double)), 0, 0, 1, 0};
  char *body = calloc(1, (size_t)size);
  if (!c.sent || !c.done || !c.latency || !body) die(2, "out of memory");
  amqp_basic_properties_t props;
  memset(&props, 0, sizeof props);
  props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
  props.delivery_mode = persistent ? 2 : 1;
  amqp_bytes_t key = amqp_cstring_bytes(queue);

  long published = 0;
  double t0 = now();
  c.last_ack = t0;
  while (confirmed(&c) < count) {
    double t = now();
    int room = published < count && (window <= 0 || published - confirmed(&c) < window);
    double due = rate > 0 ? t0 + published / rate : t;
    if (room && t >= due) {
      double ts = now();
      memcpy(body, &ts, 8);
      amqp_bytes_t b = {(size_t)size, body};
      if (amqp_basic_publish(conn, 1, amqp_empty_bytes, key, 0, 0, &props, b) != AMQP_STATUS_OK)
        die(2, "publish failed");
      c.sent[++published] = ts;
      while (pump(conn, &c, 0)) {
      }
      continue;
    }
    if (!room && t - c.last_ack > stall) {
      fprintf(stderr, "confirmlat: no confirm for %.0f s; %ld of %ld published, %ld confirmed\n",
              stall, published, count, confirmed(&c));
      exit(3);
    }
    pump(conn, &c, room ? due - t : 0.5);
  }
  double secs = now() - t0;
  qsort(c.latency, (size_t)c.acked, sizeof(double), cmp_double);
  double p50 = c.acked ? c.latency[c.acked / 2] : 0;
  double p99 = c.acked ? c.latency[(long)(c.acked * 0.99)] : 0;
  double max = c.acked ? c.latency[c.acked - 1] : 0;
  printf("mode=pub count=%ld secs=%.3f rate=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f nacks=%ld\n",
         count, secs, secs > 0 ? count / secs : 0, p50 * 1e3, p99 * 1e3, max * 1e3, c.nacks);
  free(body);
  free(c.sent);
  free(c.done);
  free(c.latency);
}

static void print_count(amqp_connection_state_t conn, const char *queue) {
  amqp_queue_declare_ok_t *ok =
      amqp_queue_declare(conn, 1, amqp_cstring_bytes(queue), 1, 0, 0, 0, amqp_empty_table);
  check(amqp_get_rpc_reply(conn), "queue.declare passive");
  printf("queue=%s messages=%u consumers=%u\n", queue, ok->message_count, ok->consumer_count);
}

int main(int argc, char **argv) {
  if (argc < 2) die(2, "usage: confirmlat pub|count [options] (see the comment in confirmlat.c)");
  const char *mode = argv[1];
  const char *host = "127.0.0.1", *user = "guest", *pass = "guest", *vhost = "/";
  const char *queue = "confirmlat";
  int port = 5672, size = 1024, persistent = 1, declare = 0, durable = 0;
  long count = 10000, window = 500;
  double rate = 0, stall = 60;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : "";
    if (!strcmp(a, "--host")) host = v, i++;
    else if (!strcmp(a, "--port")) port = atoi(v), i++;
    else if (!strcmp(a, "--user")) user = v, i++;
    else if (!strcmp(a, "--pass")) pass = v, i++;
    else if (!strcmp(a, "--vhost")) vhost = v, i++;
    else if (!strcmp(a, "--queue")) queue = v, i++;
    else if (!strcmp(a, "--count")) count = atol(v), i++;
    else if (!strcmp(a, "--size")) size = atoi(v), i++;
    else if (!strcmp(a, "--window")) window = atol(v), i++;
    else if (!strcmp(a, "--rate")) rate = atof(v), i++;
    else if (!strcmp(a, "--stall")) stall = atof(v), i++;
    else if (!strcmp(a, "--transient")) persistent = 0;
    else if (!strcmp(a, "--declare")) declare = 1;
    else if (!strcmp(a, "--durable")) durable = 1;
    else die(2, "unknown option");
  }
  if (size < 8) size = 8;
  if (count < 0) count = 0;

  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t *sock = amqp_tcp_socket_new(conn);
  if (!sock || amqp_socket_open(sock, host, port)) die(2, "cannot connect");
  check(amqp_login(conn, vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, user, pass), "login");
  amqp_channel_open(conn, 1);
  check(amqp_get_rpc_reply(conn), "channel.open");
  if (declare) {
    amqp_queue_declare(conn, 1, amqp_cstring_bytes(queue), 0, durable, 0, 0, amqp_empty_table);
    check(amqp_get_rpc_reply(conn), "queue.declare");
  }
  if (!strcmp(mode, "pub"))
    publish_all(conn, queue, count, size, persistent, window, rate, stall);
  else if (!strcmp(mode, "count"))
    print_count(conn, queue);
  else
    die(2, "mode must be pub or count");
  amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
  return 0;
}
