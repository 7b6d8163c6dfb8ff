/*
 * Minimal edge-inspector subscriber in C (libzmq only, no JSON library).
 *
 * Subscribes to a topic prefix (default "defect.") and prints one line per event:
 *     <seq> <topic> <label>
 * Subscribed to everything (-t ""), it reports gaps in `seq` on stderr; with a topic filter gaps
 * are normal (other topics take numbers too).  Missed events can be fetched from the catch-up
 * ROUTER (see README.md).
 *
 * Build:  gcc -O2 -o subscriber examples/subscriber.c -lzmq
 * Usage:  ./subscriber [-e tcp://127.0.0.1:5556] [-t defect.] [-n COUNT]
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

/* Integer value of "key":<number> in a flat JSON object, or -1 if absent. */
static long long json_int(const char *json, const char *key)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *p = strstr(json, pattern);
    if (!p)
        return -1;
    return strtoll(p + strlen(pattern), NULL, 10);
}

/* Copy the string value of "key":"<value>" into out (escapes kept verbatim); 0 if found. */
static int json_str(const char *json, const char *key, char *out, size_t outlen)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
    const char *p = strstr(json, pattern);
    if (!p || outlen == 0)
        return -1;
    p += strlen(pattern);
    size_t n = 0;
    while (*p && *p != '"' && n + 1 < outlen) {
        if (*p == '\\' && p[1] && n + 2 < outlen)
            out[n++] = *p++;
        out[n++] = *p++;
    }
    out[n] = '\0';
    return 0;
}

/* Receive one frame as a NUL-terminated heap string; NULL on error (errno set by libzmq). */
static char *recv_frame(void *sock, int *more)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, sock, 0) < 0) {
        zmq_msg_close(&msg);
        return NULL;
    }
    size_t size = zmq_msg_size(&msg);
    char *s = malloc(size + 1);
    if (s) {
        memcpy(s, zmq_msg_data(&msg), size);
        s[size] = '\0';
    }
    *more = zmq_msg_more(&msg);
    zmq_msg_close(&msg);
    return s;
}

static volatile sig_atomic_t stop = 0;
static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv)
{
    const char *endpoint = "tcp://127.0.0.1:5556";
    const char *topic = "defect.";
    long count = -1;
    int opt;
    while ((opt = getopt(argc, argv, "e:t:n:h")) != -1) {
        switch (opt) {
        case 'e': endpoint = optarg; break;
        case 't': topic = optarg; break;
        case 'n': count = strtol(optarg, NULL, 10); break;
        default:
            fprintf(stderr, "usage: %s [-e endpoint] [-t topic-prefix] [-n count]\n", argv[0]);
            return 2;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: zmq_msg_recv returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int linger = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(sub, endpoint) != 0) {
        fprintf(stderr, "subscriber: cannot connect to %s: %s\n", endpoint, zmq_strerror(errno));
        zmq_close(sub);
        zmq_ctx_term(ctx);
        return 2;
    }
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, topic, strlen(topic));

    long printed = 0;
    long long last_seq = -1;
    int rc = 0;
    while (!stop && (count < 0 || printed < count)) {
        int more = 0;
        char *t = recv_frame(sub, &more);
        if (!t) {
            if (errno == EINTR)
                break;
            fprintf(stderr, "subscriber: receive failed: %s\n", zmq_strerror(errno));
            rc = 1;
            break;
        }
        char *payload = more ? recv_frame(sub, &more) : NULL;
        while (more) { /* drain unexpected extra frames */
            free(recv_frame(sub, &more));
        }
        if (payload) {
            char label[128] = "?";
            long long seq = json_int(payload, "seq");
            json_str(payload, "label", label, sizeof label);
            if (topic[0] == '\0' && last_seq >= 0 && seq > last_seq + 1)
                fprintf(stderr, "subscriber: seq gap %lld..%lld\n", last_seq + 1, seq - 1);
            last_seq = seq;
            printf("%lld %s %s\n", seq, t, label);
            printed++;
        }
        free(payload);
        free(t);
    }
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return rc;
}
