/* test_capture_pcap.c - unit tests for the pcap capture writer (capture_pcap.c): synthetic event
 * sequences go in, and the file is read back with libpcap (pcap_open_offline) and decoded here
 * frame by frame. Every test checks what Wireshark relies on: Ethernet/IP/TCP headers with valid
 * checksums, a three-way handshake before data, sequence and acknowledgement numbers that follow
 * from the bytes (each sender's next sequence number, every ACK acknowledging all the peer sent),
 * segments of at most 1460 octets, bytes in flight below the window, pure ACKs that acknowledge
 * new bytes, FIN both ways; and that the payload of each direction is exactly the EV_WIRE bytes.
 * Then: the endpoint choice, IPv6, the new stream after STARTTLS, huge chunks, timestamps, the
 * flushing, and odd event sequences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pcap/pcap.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smtptap/capture.h"

#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

enum { TH_FIN = 0x01, TH_SYN = 0x02, TH_RST = 0x04, TH_PSH = 0x08, TH_ACK = 0x10 };

/* ---- building events ---------------------------------------------------------------------- */

static struct sockaddr_storage sa(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
    }
    return ss;
}

/* A writer on a fresh file in a temporary directory. */
struct fixture {
    char dir[64], path[128];
    struct event_writer *w;
    uint64_t now_us;
    union event_facts facts; /* the facts of the event being written */
};

static void fx_open(struct fixture *fx)
{
    memset(fx, 0, sizeof *fx);
    strcpy(fx->dir, "/tmp/test_capture_pcap.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->path, sizeof fx->path, "%s/s.pcap", fx->dir);
    char err[256] = "";
    fx->w = pcap_writer_new(fx->path, err, sizeof err);
    assert_non_null(fx->w);
    fx->now_us = 1700000000ULL * 1000000 + 123456;
}

static void fx_cleanup(struct fixture *fx)
{
    unlink(fx->path);
    rmdir(fx->dir);
}

static void fx_close(struct fixture *fx)
{
    fx->w->close(fx->w);
    fx->w = NULL;
}

static void put(struct fixture *fx, enum event_kind kind, enum event_dir dir, const uint8_t *b,
                size_t n, const union event_facts *facts)
{
    fx->now_us += 1000;
    struct event ev = {.session = 7,
                       .wall_us = fx->now_us,
                       .kind = kind,
                       .dir = dir,
                       .bytes = b,
                       .len = n,
                       .facts = facts};
    fx->w->write(fx->w, &ev);
}

static void start(struct fixture *fx, const char *client, uint16_t cport, const char *listener,
                  uint16_t lport)
{
    fx->facts.endpoints.a = sa(client, cport);
    fx->facts.endpoints.b = sa(listener, lport);
    put(fx, EV_START, DIR_NONE, NULL, 0, &fx->facts);
}

static void upstream(struct fixture *fx, const char *server, uint16_t port)
{
    fx->facts.endpoints.a = sa(server, port);
    fx->facts.endpoints.b = sa(server, 40001);
    put(fx, EV_UPSTREAM, DIR_S2C, NULL, 0, &fx->facts);
}

static void c2s(struct fixture *fx, const uint8_t *b, size_t n)
{
    put(fx, EV_WIRE, DIR_C2S, b, n, NULL);
}

static void s2c(struct fixture *fx, const uint8_t *b, size_t n)
{
    put(fx, EV_WIRE, DIR_S2C, b, n, NULL);
}

static void end(struct fixture *fx)
{
    memset(&fx->facts, 0, sizeof fx->facts);
    put(fx, EV_END, DIR_NONE, NULL, 0, &fx->facts);
}

/* ---- reading the file back ---------------------------------------------------------------- */

struct pkt {
    uint64_t ts_us;
    int family;
    uint8_t src[16], dst[16];
    uint16_t sport, dport, window, mss; /* mss: 0 without the option */
    uint32_t seq, ack;
    uint8_t flags;
    const uint8_t *payload; /* into data */
    size_t len;
    uint8_t *data; /* the frame */
};

struct capture {
    struct pkt *p;
    size_t n;
};

static uint16_t get16(const uint8_t *b)
{
    return (uint16_t)(b[0] << 8 | b[1]);
}

static uint32_t get32(const uint8_t *b)
{
    return (uint32_t)get16(b) << 16 | get16(b + 2);
}

static uint32_t sum16(uint32_t sum, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i + 1 < n; i += 2) sum += (uint32_t)(b[i] << 8 | b[i + 1]);
    if (n & 1) sum += (uint32_t)(b[n - 1] << 8);
    return sum;
}

static uint16_t fold(uint32_t sum)
{
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

/* Decodes one frame, checking the headers and both checksums as it goes. */
static void decode(struct pkt *k, uint8_t *f, size_t len)
{
    k->data = f;
    assert_true(len >= 14 + 20 + 20);
    static const uint8_t cmac[6] = {2, 0, 0, 0, 0, 1}, smac[6] = {2, 0, 0, 0, 0, 2};
    uint16_t type = get16(f + 12);
    const uint8_t *ip = f + 14, *tcp;
    size_t tcp_len;
    uint32_t pseudo;
    if (type == 0x0800) {
        k->family = AF_INET;
        assert_int_equal(ip[0], 0x45);
        assert_int_equal(get16(ip + 2), len - 14);
        assert_int_equal(ip[9], IPPROTO_TCP);
        assert_int_equal(fold(sum16(0, ip, 20)), 0xffff); /* header checksum */
        memcpy(k->src, ip + 12, 4);
        memcpy(k->dst, ip + 16, 4);
        tcp = ip + 20;
        tcp_len = len - 34;
        pseudo = sum16(0, ip + 12, 8) + IPPROTO_TCP + (uint32_t)tcp_len;
    } else {
        assert_int_equal(type, 0x86dd);
        k->family = AF_INET6;
        assert_true(len >= 14 + 40 + 20);
        assert_int_equal(ip[0] >> 4, 6);
        assert_int_equal(get16(ip + 4), len - 54);
        assert_int_equal(ip[6], IPPROTO_TCP);
        memcpy(k->src, ip + 8, 16);
        memcpy(k->dst, ip + 24, 16);
        tcp = ip + 40;
        tcp_len = len - 54;
        pseudo = sum16(0, ip + 8, 32) + IPPROTO_TCP + (uint32_t)tcp_len;
    }
    assert_int_equal(fold(sum16(pseudo, tcp, tcp_len)), 0xffff); /* TCP checksum */
    k->sport = get16(tcp);
    k->dport = get16(tcp + 2);
    k->seq = get32(tcp + 4);
    k->ack = get32(tcp + 8);
    size_t hdr = (size_t)(tcp[12] >> 4) * 4;
    assert_true(hdr >= 20 && hdr <= tcp_len);
    k->flags = tcp[13];
    k->window = get16(tcp + 14);
    assert_int_equal(get16(tcp + 18), 0); /* no urgent pointer: the checksum is at 16 */
    if (hdr >= 24 && tcp[20] == 2 && tcp[21] == 4) k->mss = get16(tcp + 22);
    k->payload = tcp + hdr;
    k->len = tcp_len - hdr;
    /* MACs: the client's frames come from 02:..:01 (the server's port is 25 or 587) */
    bool from_server = k->sport == 25 || k->sport == 587;
    assert_memory_equal(f + 6, from_server ? smac : cmac, 6);
    assert_memory_equal(f, from_server ? cmac : smac, 6);
}

static struct capture read_capture(const char *path)
{
    char err[PCAP_ERRBUF_SIZE];
    pcap_t *pc = pcap_open_offline(path, err);
    if (!pc) fail_msg("pcap_open_offline: %s", err);
    assert_int_equal(pcap_datalink(pc), DLT_EN10MB);
    struct capture c = {0};
    size_t cap = 0;
    struct pcap_pkthdr *h;
    const u_char *data;
    int r;
    while ((r = pcap_next_ex(pc, &h, &data)) == 1) {
        assert_int_equal(h->caplen, h->len);
        if (c.n == cap) {
            cap = cap ? cap * 2 : 64;
            c.p = realloc(c.p, cap * sizeof *c.p);
            assert_non_null(c.p);
        }
        struct pkt *k = &c.p[c.n++];
        memset(k, 0, sizeof *k);
        k->ts_us = (uint64_t)h->ts.tv_sec * 1000000 + (uint64_t)h->ts.tv_usec;
        uint8_t *copy = malloc(h->caplen);
        assert_non_null(copy);
        memcpy(copy, data, h->caplen);
        decode(k, copy, h->caplen);
    }
    assert_int_equal(r, PCAP_ERROR_BREAK); /* the end of the file, no truncated record */
    pcap_close(pc);
    return c;
}

static void free_capture(struct capture *c)
{
    for (size_t i = 0; i < c->n; i++) free(c->p[i].data);
    free(c->p);
}

/* ---- what every capture must satisfy ------------------------------------------------------ */

/* One synthetic TCP stream as the checker followed it. */
struct stream {
    int family;
    uint8_t caddr[16], saddr[16];
    uint16_t cport, sport;
    uint32_t c_isn, s_isn;
    uint8_t *up, *down; /* payload client to server, server to client */
    size_t up_len, down_len;
    size_t first, last; /* packet indices */
    bool closed;        /* FIN both ways, last ACK */
};

struct streams {
    struct stream s[8];
    size_t n;
};

static void append(uint8_t **b, size_t *n, const uint8_t *p, size_t len)
{
    *b = realloc(*b, *n + len + 1);
    assert_non_null(*b);
    if (len) memcpy(*b + *n, p, len);
    *n += len;
}

/* Follows the packets: streams one after the other, each SYN, SYN/ACK, ACK, then data with
 * pure ACKs, then FIN, FIN/ACK, ACK. Asserts the TCP arithmetic and returns the streams. */
static struct streams check_tcp(const struct capture *c)
{
    struct streams out;
    memset(&out, 0, sizeof out);
    size_t i = 0;
    uint64_t last_ts = 0;
    for (size_t k = 0; k < c->n; k++) {
        assert_true(c->p[k].ts_us >= last_ts); /* time never goes backwards */
        last_ts = c->p[k].ts_us;
    }
    while (i < c->n) {
        assert_true(out.n < 8);
        struct stream *st = &out.s[out.n++];
        const struct pkt *syn = &c->p[i], *synack, *ack3;
        assert_true(i + 3 <= c->n);
        synack = &c->p[i + 1];
        ack3 = &c->p[i + 2];
        st->first = i;
        st->family = syn->family;
        memcpy(st->caddr, syn->src, 16);
        memcpy(st->saddr, syn->dst, 16);
        st->cport = syn->sport;
        st->sport = syn->dport;
        assert_true(st->sport == 25 || st->sport == 587);
        assert_int_equal(syn->flags, TH_SYN);
        assert_int_equal(syn->mss, 1460);
        assert_int_equal(syn->len, 0);
        assert_int_equal(synack->flags, TH_SYN | TH_ACK);
        assert_int_equal(synack->mss, 1460);
        assert_int_equal(synack->ack, syn->seq + 1);
        assert_int_equal(synack->sport, st->sport);
        assert_int_equal(synack->dport, st->cport);
        assert_int_equal(ack3->flags, TH_ACK);
        assert_int_equal(ack3->seq, syn->seq + 1);
        assert_int_equal(ack3->ack, synack->seq + 1);
        st->c_isn = syn->seq;
        st->s_isn = synack->seq;
        uint32_t next[2] = {syn->seq + 1, synack->seq + 1}; /* [0] client, [1] server */
        uint32_t acked[2] = {next[0], next[1]};             /* what the peer acknowledged */
        bool fin[2] = {false, false};
        for (i += 3; i < c->n; i++) {
            const struct pkt *k = &c->p[i];
            int from = k->sport == st->sport ? 1 : 0;
            assert_int_equal(k->family, st->family);
            assert_memory_equal(from ? k->src : k->dst, st->saddr, 16);
            assert_memory_equal(from ? k->dst : k->src, st->caddr, 16);
            assert_int_equal(from ? k->dport : k->sport, st->cport);
            assert_int_equal(from ? k->sport : k->dport, st->sport);
            assert_false(k->flags & (TH_SYN | TH_RST));
            assert_true(k->flags & TH_ACK);
            assert_int_equal(k->window, 65535);
            assert_int_equal(k->seq, next[from]);
            assert_int_equal(k->ack, next[!from]); /* everything the peer sent */
            assert_true(k->len <= 1460);
            if (!k->len && !(k->flags & TH_FIN) && !(fin[0] && fin[1]))
                assert_true(k->ack != acked[!from]); /* a pure ACK acknowledges new bytes */
            acked[!from] = k->ack;
            assert_true(next[from] + k->len - acked[from] < 65535); /* in flight < window */
            if (k->len) {
                assert_false(fin[from]);
                if (from)
                    append(&st->down, &st->down_len, k->payload, k->len);
                else
                    append(&st->up, &st->up_len, k->payload, k->len);
            }
            next[from] += (uint32_t)k->len;
            if (k->flags & TH_FIN) {
                assert_int_equal(k->len, 0);
                fin[from] = true;
                next[from]++;
            }
            if (fin[0] && fin[1] && !(k->flags & TH_FIN)) { /* the last ACK */
                st->closed = true;
                i++;
                break;
            }
        }
        st->last = i - 1;
    }
    return out;
}

static void free_streams(struct streams *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->s[i].up), free(s->s[i].down);
}

static void assert_ip(const uint8_t addr[16], const char *ip)
{
    uint8_t want[16] = {0};
    assert_int_equal(inet_pton(strchr(ip, ':') ? AF_INET6 : AF_INET, ip, want), 1);
    assert_memory_equal(addr, want, 16);
}

static void assert_bytes(const uint8_t *got, size_t got_len, const uint8_t *want, size_t want_len)
{
    assert_int_equal(got_len, want_len);
    if (want_len) assert_memory_equal(got, want, want_len);
}

/* ---- a whole plain session ---------------------------------------------------------------- */

static const char GREETING[] = "220 mx.example ESMTP\r\n";
static const char EHLO[] = "EHLO client.example\r\n";
static const char EHLO_REPLY[] = "250-mx.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n";
static const char QUIT[] = "QUIT\r\n";
static const char BYE[] = "221 2.0.0 Bye\r\n";

static void plain_ipv4_session(void **state)
{
    (void)state;
    struct fixture fx;
    fx_open(&fx);
    start(&fx, "192.168.1.10", 40000, "10.0.0.1", 2525);
    upstream(&fx, "10.0.0.5", 25);
    s2c(&fx, LIT(GREETING));
    c2s(&fx, LIT(EHLO));
    s2c(&fx, LIT(EHLO_REPLY));
    c2s(&fx, LIT(QUIT));
    s2c(&fx, LIT(BYE));
    end(&fx);
    fx_close(&fx);

    struct capture c = read_capture(fx.path);
    /* handshake 3, five chunks of one segment each and its ACK, FIN exchange 3 */
    assert_int_equal(c.n, 3 + 5 * 2 + 3);
    struct streams s = check_tcp(&c);
    assert_int_equal(s.n, 1);
    struct stream *st = &s.s[0];
    assert_true(st->closed);
    assert_int_equal(st->family, AF_INET);
    assert_ip(st->caddr, "192.168.1.10");
    assert_ip(st->saddr, "10.0.0.5");
    assert_int_equal(st->cport, 40000);
    assert_int_equal(st->sport, 25);
    const char up[] = "EHLO client.example\r\nQUIT\r\n";
    char down[256];
    snprintf(down, sizeof down, "%s%s%s", GREETING, EHLO_REPLY, BYE);
    assert_bytes(st->up, st->up_len, LIT(up));
    assert_bytes(st->down, st->down_len, (const uint8_t *)down, strlen(down));
    /* the greeting: from the server, PSH|ACK, right after the handshake */
    assert_int_equal(c.p[3].flags, TH_PSH | TH_ACK);
    assert_int_equal(c.p[3].sport, 25);
    assert_int_equal(c.p[3].seq, st->s_isn + 1);
    assert_int_equal(c.p[3].ack, st->c_isn + 1);
    /* then the client's ACK of it */
    assert_int_equal(c.p[4].flags, TH_ACK);
    assert_int_equal(c.p[4].sport, 40000);
    assert_int_equal(c.p[4].ack, st->s_isn + 1 + sizeof GREETING - 1);
    /* the client closes first: FIN/ACK, the server's FIN/ACK, the last ACK */
    assert_int_equal(c.p[c.n - 3].flags, TH_FIN | TH_ACK);
    assert_int_equal(c.p[c.n - 3].sport, 40000);
    assert_int_equal(c.p[c.n - 2].flags, TH_FIN | TH_ACK);
    assert_int_equal(c.p[c.n - 2].sport, 25);
    assert_int_equal(c.p[c.n - 1].flags, TH_ACK);
    assert_int_equal(c.p[c.n - 1].seq, st->c_isn + 1 + sizeof up - 1 + 1);
    /* timestamps: the events' wall clock (START +1 ms, UPSTREAM +2 ms, greeting +3 ms); the
     * handshake when the session started */
    uint64_t t0 = 1700000000ULL * 1000000 + 123456;
    assert_int_equal(c.p[0].ts_us, t0 + 1000);
    assert_int_equal(c.p[2].ts_us, t0 + 1000);
    assert_int_equal(c.p[3].ts_us, t0 + 3000);
    assert_int_equal(c.p[5].ts_us, t0 + 4000);
    assert_int_equal(c.p[c.n - 1].ts_us, t0 + 8000);
    free_streams(&s);
    free_capture(&c);
    fx_cleanup(&fx);
}

/* The file is 0600 and a second writer on the same path fails with a reason. */
static void file_mode_and_existing_path(void **state)
{
    (void)state;
    struct fixture fx;
    fx_open(&fx);
    struct stat st;
    assert_int_equal(stat(fx.path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char err[256] = "";
    assert_null(pcap_writer_new(fx.path, err, sizeof err));
    assert_non_null(strstr(err, fx.path));
    fx_close(&fx);
    struct capture c = read_capture(fx.path); /* a valid empty capture */
    assert_int_equal(c.n, 0);
    free_capture(&c);
    fx_cleanup(&fx);
}

/* ---- endpoints ---------------------------------------------------------------------------- */

/* The addresses and ports of the only stream of a capture written from the events fn writes. */
static struct stream only_stream(void (*fn)(struct fixture *))
{
    struct fixture fx;
    fx_open(&fx);
    fn(&fx);
    fx_close(&fx);
    struct capture c = read_capture(fx.path);
    struct streams s = check_tcp(&c);
    assert_int_equal(s.n, 1);
    struct stream st = s.s[0];
    st.up = st.down = NULL;
    free_streams(&s);
    free_capture(&c);
    fx_cleanup(&fx);
    return st;
}

static void upstream_after_wire(struct fixture *fx)
{
    start(fx, "192.168.1.10", 40000, "10.0.0.1", 587);
    c2s(fx, LIT("EHLO early\r\n")); /* before the upstream was connected */
    upstream(fx, "10.0.0.5", 25);
    s2c(fx, LIT(GREETING));
    end(fx);
}

static void server_is_listener_when_upstream_came_late(void **state)
{
    (void)state;
    struct stream st = only_stream(upstream_after_wire);
    assert_ip(st.caddr, "192.168.1.10");
    assert_ip(st.saddr, "10.0.0.1");
    assert_int_equal(st.sport, 587); /* the listener's port is 587 */
}

static void v6_client_v4_upstream(struct fixture *fx)
{
    start(fx, "2001:db8:1::10", 40000, "2001:db8:1::1", 2525);
    upstream(fx, "10.0.0.5", 25);
    s2c(fx, LIT(GREETING));
    end(fx);
}

static void families_differ_use_the_listener(void **state)
{
    (void)state;
    struct stream st = only_stream(v6_client_v4_upstream);
    assert_int_equal(st.family, AF_INET6);
    assert_ip(st.caddr, "2001:db8:1::10");
    assert_ip(st.saddr, "2001:db8:1::1");
    assert_int_equal(st.sport, 25);
}

static void v4_mapped_client(struct fixture *fx)
{
    start(fx, "::ffff:127.0.0.1", 40000, "::ffff:127.0.0.1", 2525);
    upstream(fx, "127.0.0.2", 2526);
    s2c(fx, LIT(GREETING));
    end(fx);
}

static void ipv4_mapped_addresses_are_ipv4(void **state)
{
    (void)state;
    struct stream st = only_stream(v4_mapped_client);
    assert_int_equal(st.family, AF_INET);
    assert_ip(st.caddr, "127.0.0.1");
    assert_ip(st.saddr, "127.0.0.2");
    assert_int_equal(st.sport, 25); /* not the upstream's real port */
}

static void plain_ipv6_session(void **state)
{
    (void)state;
    struct fixture fx;
    fx_open(&fx);
    start(&fx, "::1", 50123, "::1", 2525);
    upstream(&fx, "::1", 2526);
    s2c(&fx, LIT(GREETING));
    c2s(&fx, LIT(EHLO));
    s2c(&fx, LIT(EHLO_REPLY));
    end(&fx);
    fx_close(&fx);
    struct capture c = read_capture(fx.path);
    assert_int_equal(c.n, 3 + 3 * 2 + 3);
    for (size_t i = 0; i < c.n; i++) assert_int_equal(c.p[i].family, AF_INET6);
    struct streams s = check_tcp(&c);
    assert_int_equal(s.n, 1);
    assert_ip(s.s[0].caddr, "::1");
    assert_ip(s.s[0].saddr, "::1");
    assert_int_equal(s.s[0].cport, 50123);
    assert_int_equal(s.s[0].sport, 25);
    assert_true(s.s[0].closed);
    assert_bytes(s.s[0].up, s.s[0].up_len, LIT(EHLO));
    char down[256];
    snprintf(down, sizeof down, "%s%s", GREETING, EHLO_REPLY);
    assert_bytes(s.s[0].down, s.s[0].down_len, (const uint8_t *)down, strlen(down));
    free_streams(&s);
    free_capture(&c);
    fx_cleanup(&fx);
}

/* ---- STARTTLS ------------------------------------------------------------------------------ */

static void starttls_starts_a_new_stream(void **state)
{
    (void)state;
    struct fixture fx;
    fx_open(&fx);
    start(&fx, "192.168.1.10", 40000, "10.0.0.1", 25);
    upstream(&fx, "10.0.0.5", 25);
    s2c(&fx, LIT(GREETING));
    c2s(&fx, LIT(EHLO));
    s2c(&fx, LIT(EHLO_REPLY));
    c2s(&fx, LIT("STARTTLS\r\n"));
    s2c(&fx, LIT("220 2.0.0 Ready to start TLS\r\n"));
    put(&fx, EV_CLIENT_TLS, DIR_NONE, NULL, 0, NULL);
    c2s(&fx, LIT(EHLO));
    s2c(&fx, LIT(EHLO_REPLY));
    c2s(&fx, LIT(QUIT));
    s2c(&fx, LIT(BYE));
    end(&fx);
    fx_close(&fx);

    struct capture c = read_capture(fx.path);
    assert_int_equal(c.n, (3 + 5 * 2 + 3) + (3 + 4 * 2 + 3));
    struct streams s = check_tcp(&c);
    assert_int_equal(s.n, 2);
    struct stream *a = &s.s[0], *b = &s.s[1];
    assert_true(a->closed && b->closed);
    /* the first stream ends with the 220, its ACK and the FIN exchange */
    assert_int_equal(a->last, 3 + 5 * 2 + 3 - 1);
    const char *ready = "220 2.0.0 Ready to start TLS\r\n";
    assert_true(a->down_len >= strlen(ready));
    assert_memory_equal(a->down + a->down_len - strlen(ready), ready, strlen(ready));
    const char a_up[] = "EHLO client.example\r\nSTARTTLS\r\n";
    assert_bytes(a->up, a->up_len, LIT(a_up));
    /* the second: same addresses and server port, another client port, other ISNs */
    assert_memory_equal(a->caddr, b->caddr, 16);
    assert_memory_equal(a->saddr, b->saddr, 16);
    assert_int_equal(b->sport, 25);
    assert_int_equal(a->cport, 40000);
    assert_int_equal(b->cport, 40001);
    assert_true(a->c_isn != b->c_isn && a->s_isn != b->s_isn);
    const char b_up[] = "EHLO client.example\r\nQUIT\r\n";
    assert_bytes(b->up, b->up_len, LIT(b_up));
    char down[256];
    snprintf(down, sizeof down, "%s%s", EHLO_REPLY, BYE);
    assert_bytes(b->down, b->down_len, (const uint8_t *)down, strlen(down));
    /* the new SYN comes after the EV_CLIENT_TLS, with the next bytes */
    assert_true(c.p[b->first].ts_us > c.p[a->last].ts_us);
    free_streams(&s);
    free_capture(&c);
    fx_cleanup(&fx);
}

/* Passthrough: EV_CLIENT_TLS and nothing more in clear: no second stream. */
static void client_tls_without_more_bytes(void **state)
{
    (void)state;
    struct fixture fx;
    fx_open(&fx);
    start(&fx, "192.168.1.10", 40000, "10.0.0.1", 25);
    s2c(&fx, LIT(GREETING));
    c2s(&fx, LIT("STARTTLS\r\n"));
    s2c(&fx, LIT("220 go ahead\r\n"));
    put(&fx, EV_CLIENT_TLS, DIR_NONE, NULL, 0, NULL);
    end(&fx);
    fx_close(&fx);
    struct capture c = read_capture(fx.path);
    assert_int_equal(c.n, 3 + 3 * 2 + 3);
    struct streams s = check_tcp(&c);
    assert_int_equal(s.n, 1);
    assert_true(s.s[0].closed);
    free_streams(&s);
    free_capture(&c);
    fx_cleanup(&fx);
}

/* ---- sizes -------------------------------------------------------------------------------- */

/* size octets of every value, NULs and non-UTF-8 included. */
static uint8_t *pattern(size_t size, uint32_t seed)
{
    uint8_t *b = malloc(size ? size : 1);
    assert_non_null(b);
    for (size_t i = 0; i < size; i++) {
        seed = seed * 1103515245u + 12345u;
        b[i] = (uint8_t)(seed >> 16);
    }
    return b;
}

static void huge_chunks_are_split(void **state)
{
    (void)state;
    const size_t big = 3 * 1000 * 1000 + 7, mid = 1460 * 32; /* mid: exactly ACK_EVERY */
    uint8_t *up = pattern(big, 1), *down = pattern(mid + 1, 2);
    struct fixture fx;
    fx_open(&fx);
    start(&fx, "192.168.1.10", 40000, "10.0.0.1", 25);
    upstream(&fx, "10.0.0.5", 25);
    s2c(&fx, down, mid + 1);
    c2s(&fx, up, big);
    c2s(&fx, up, 1460);
    s2c(&fx, down, mid);
    end(&fx);
    fx_close(&fx);
    struct capture c = read_capture(fx.path);
    struct streams s = check_tcp(&c); /* segment sizes, window, ACKs */
    assert_int_equal(s.n, 1);
    uint8_t *want_up = malloc(big + 1460), *want_down = malloc(2 * mid + 1);
    assert_non_null(want_up);
    assert_non_null(want_down);
    memcpy(want_up, up, big);
    memcpy(want_up + big, up, 1460);
    memcpy(want_down, down, mid + 1);
    memcpy(want_down + mid + 1, down, mid);
    assert_bytes(s.s[0].up, s.s[0].up_len, want_up, big + 1460);
    assert_bytes(s.s[0].down, s.s[0].down_len, want_down, 2 * mid + 1);
    /* segments: full ones but the last of each chunk */
    size_t segs_up = (big + 1459) / 1460 + 1, segs_down = 33 + 32;
    size_t acks = (big + 1459) / 1460 / 32 + ((big + 1459) / 1460 % 32 ? 1 : 0) + 1 + 2 + 1;
    assert_int_equal(c.n, 3 + segs_up + segs_down + acks + 3);
    free(want_up);
    free(want_down);
    free(up);
    free(down);
    free_streams(&s);
    free_capture(&c);
    fx_cleanup(&fx);
}

/* ---- time and flushing -------------------------------------------------------------------- */

static void time_never_goes_backwards(void **state)
{
    (void)state;
    struct fixture fx;
    fx_open(&fx);
    start(&fx, "192.168.1.10", 40000, "10.0.0.1", 25);
    s2c(&fx, LIT(GREETING));
    uint64_t high = fx.now_us;
    fx.now_us -= 500000; /* the wall clock stepped back */
    c2s(&fx, LIT(EHLO));
    end(&fx);
    fx_close(&fx);
    struct capture c = read_capture(fx.path);
    struct streams s = check_tcp(&c); /* asserts timestamps never decrease */
    assert_int_equal(c.p[c.n - 1].ts_us, high);
    free_streams(&s);
    free_capture(&c);
    fx_cleanup(&fx);
}

static size_t packets_on_disk(const char *path)
{
    struct capture c = read_capture(path);
    size_t n = c.n;
    free_capture(&c);
    return n;
}

static void flushed_after_each_server_chunk(void **state)
{
    (void)state;
    struct fixture fx;
    fx_open(&fx);
    assert_int_equal(packets_on_disk(fx.path), 0); /* the header is there at once */
    start(&fx, "192.168.1.10", 40000, "10.0.0.1", 25);
    s2c(&fx, LIT(GREETING));
    assert_int_equal(packets_on_disk(fx.path), 3 + 2);
    c2s(&fx, LIT(EHLO));
    s2c(&fx, LIT(EHLO_REPLY));
    assert_int_equal(packets_on_disk(fx.path), 3 + 3 * 2);
    put(&fx, EV_CLIENT_TLS, DIR_NONE, NULL, 0, NULL);
    assert_int_equal(packets_on_disk(fx.path), 3 + 3 * 2 + 3);
    fx_close(&fx);
    fx_cleanup(&fx);
}

/* ---- odd sequences ------------------------------------------------------------------------ */

/* Bytes before any EV_START, no facts, zero-length and NULL chunks, a DIR_NONE chunk, stray
 * EV_CLIENT_TLS and EV_END, bytes after the end, no final EV_END: the file stays valid. */
static void odd_sequences(void **state)
{
    (void)state;
    struct fixture fx;
    fx_open(&fx);
    put(&fx, EV_CLIENT_TLS, DIR_NONE, NULL, 0, NULL);
    put(&fx, EV_END, DIR_NONE, NULL, 0, NULL);
    c2s(&fx, LIT("EHLO before start\r\n"));
    put(&fx, EV_START, DIR_NONE, NULL, 0, NULL);    /* no facts */
    put(&fx, EV_UPSTREAM, DIR_S2C, NULL, 0, NULL);  /* no facts */
    c2s(&fx, NULL, 0);                              /* zero length */
    c2s(&fx, NULL, 5);                              /* no bytes */
    put(&fx, EV_WIRE, DIR_NONE, LIT("nowhere"), 0); /* no direction */
    s2c(&fx, LIT("250 \0\xff\xfe\r\n"));
    put(&fx, EV_COMMAND, DIR_C2S, LIT("not on the wire\r\n"), NULL);
    put(&fx, EV_BODY, DIR_C2S, LIT("not on the wire\r\n"), NULL);
    end(&fx);
    end(&fx);
    start(&fx, "192.168.1.10", 65535, "10.0.0.1", 25); /* a late start */
    s2c(&fx, LIT("after the end\r\n"));
    put(&fx, EV_CLIENT_TLS, DIR_NONE, NULL, 0, NULL);
    c2s(&fx, LIT("and more\r\n")); /* never ended: closing the writer ends it */
    fx_close(&fx);

    struct capture c = read_capture(fx.path);
    struct streams s = check_tcp(&c);
    assert_int_equal(s.n, 3);
    for (size_t i = 0; i < 3; i++) assert_true(s.s[i].closed);
    /* nothing said where: documentation addresses, the fallback port */
    assert_int_equal(s.s[0].family, AF_INET);
    assert_ip(s.s[0].caddr, "192.0.2.1");
    assert_ip(s.s[0].saddr, "192.0.2.2");
    assert_int_equal(s.s[0].cport, 49152);
    assert_int_equal(s.s[0].sport, 25);
    assert_bytes(s.s[0].up, s.s[0].up_len, LIT("EHLO before start\r\n"));
    assert_bytes(s.s[0].down, s.s[0].down_len, LIT("250 \0\xff\xfe\r\n"));
    /* the late start names the client; the server is the listener (the upstream came late) */
    assert_ip(s.s[1].caddr, "192.168.1.10");
    assert_ip(s.s[1].saddr, "10.0.0.1");
    assert_int_equal(s.s[1].cport, 1024); /* 65535 bumped once, wrapped */
    assert_bytes(s.s[1].down, s.s[1].down_len, LIT("after the end\r\n"));
    assert_int_equal(s.s[1].up_len, 0);
    assert_int_equal(s.s[2].cport, 1025);
    assert_bytes(s.s[2].up, s.s[2].up_len, LIT("and more\r\n"));
    free_streams(&s);
    free_capture(&c);
    fx_cleanup(&fx);
}

/* A client port equal to the server's is moved, so the direction stays clear. */
static void client_port_never_the_server_port(struct fixture *fx)
{
    start(fx, "192.168.1.10", 25, "10.0.0.1", 25);
    s2c(fx, LIT(GREETING));
    end(fx);
}

static void client_port_25_is_moved(void **state)
{
    (void)state;
    struct stream st = only_stream(client_port_never_the_server_port);
    assert_int_equal(st.cport, 26);
    assert_int_equal(st.sport, 25);
}

/* Only events, no bytes: an empty but valid capture. */
static void no_bytes_no_packets(void **state)
{
    (void)state;
    struct fixture fx;
    fx_open(&fx);
    start(&fx, "192.168.1.10", 40000, "10.0.0.1", 25);
    upstream(&fx, "10.0.0.5", 25);
    put(&fx, EV_INFO, DIR_NONE, NULL, 0, NULL);
    end(&fx);
    fx_close(&fx);
    assert_int_equal(packets_on_disk(fx.path), 0);
    fx_cleanup(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_ipv4_session),
        cmocka_unit_test(file_mode_and_existing_path),
        cmocka_unit_test(server_is_listener_when_upstream_came_late),
        cmocka_unit_test(families_differ_use_the_listener),
        cmocka_unit_test(ipv4_mapped_addresses_are_ipv4),
        cmocka_unit_test(plain_ipv6_session),
        cmocka_unit_test(starttls_starts_a_new_stream),
        cmocka_unit_test(client_tls_without_more_bytes),
        cmocka_unit_test(huge_chunks_are_split),
        cmocka_unit_test(time_never_goes_backwards),
        cmocka_unit_test(flushed_after_each_server_chunk),
        cmocka_unit_test(odd_sequences),
        cmocka_unit_test(client_port_25_is_moved),
        cmocka_unit_test(no_bytes_no_packets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
