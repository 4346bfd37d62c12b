/* capture_pcap.c - the pcap capture format (capture.h): the client's dialog as smtptap saw it
 * in clear, written through libpcap as synthetic Ethernet / IPv4-or-IPv6 / TCP between the
 * client and the server, for Wireshark and tshark. It reads nothing but events.
 *
 * What the file shows, and why:
 * - Endpoints: the real client address (EV_START a). The server is the upstream (EV_UPSTREAM a)
 *   when it was connected before the first EV_WIRE, else the listener (EV_START b); the listener
 *   too when the upstream's family is not the client's. IPv4-mapped IPv6 addresses are written
 *   as IPv4. Missing addresses become documentation ones (192.0.2.x, 2001:db8::x).
 * - Ports: the client's real port; the server's is 25, or 587 when the listener's is 587, even
 *   for implicit TLS: Wireshark dissects SMTP on those ports, and these bytes are in clear.
 * - Streams: a three-way handshake before a stream's first byte, FIN/ACK both ways at EV_END (or
 *   when the writer closes). EV_CLIENT_TLS (the client's STARTTLS 220 was sent) closes the
 *   stream and the next bytes open a new one from another client port: Wireshark hands what
 *   follows a STARTTLS 220 in one stream to its TLS dissector, and a new port is no port reuse.
 * - Segments: every EV_WIRE byte, in order (C2S client to server, S2C server to client), cut at
 *   a 1460-octet MSS. The receiver sends a pure ACK after each chunk and after every
 *   ACK_EVERY segments, so bytes in flight stay below the 65535-octet window (Wireshark never
 *   sees a full window) and every pure ACK acknowledges new bytes (never a duplicate ACK).
 * - Time: ev->wall_us, never going backwards; the first handshake at EV_START's (the client's
 *   connection), the later ones with the bytes that open them.
 * - Flushed after each server-to-client chunk, at each stream's end and on close, so the file
 *   can be read while the session runs. A write error is reported once and ends the writing. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtptap/capture.h"

enum {
    MSS = 1460,       /* payload octets per segment */
    ACK_EVERY = 32,   /* segments between the receiver's ACKs: 32 * 1460 < WINDOW */
    WINDOW = 65535,   /* advertised by both sides, no window scaling */
    ETH_LEN = 14,     /* Ethernet II header */
    IP4_LEN = 20,     /* IPv4 header, no options */
    IP6_LEN = 40,     /* IPv6 header, no extension headers */
    TCP_LEN = 20,     /* TCP header without options */
    TCP_SYN_LEN = 24, /* with the MSS option */
    FRAME_MAX = ETH_LEN + IP6_LEN + TCP_SYN_LEN + MSS,
    SNAPLEN = 65535,
    FILE_BUFFER = 64 * 1024, /* the file's stdio buffer: a 20 MB message is some 14,000
                                segments, two fwrites each; flushed at every reply anyway */
};

enum { TH_FIN = 0x01, TH_SYN = 0x02, TH_PSH = 0x08, TH_ACK = 0x10 };

/* One side of the synthetic stream. */
struct peer {
    uint8_t mac[6];
    uint8_t addr[16]; /* IPv4: the first 4 octets */
    uint16_t port;
    uint32_t next_seq; /* the sequence number of its next octet (SYN and FIN count one) */
    uint16_t ip_id;
};

struct pcap_writer {
    struct event_writer base;
    pcap_t *dead;
    pcap_dumper_t *dump; /* owns the FILE */
    char *file_buffer;   /* the FILE's (setvbuf), freed after it is closed */
    char *path;          /* for the one error message */
    bool failed;         /* a write failed: nothing more is written */
    uint64_t session;    /* from the first event: seeds the initial sequence numbers */
    bool have_session;
    /* What the events said (ss_family 0: not said). */
    struct sockaddr_storage client, listener, upstream;
    bool seen_wire; /* an EV_WIRE came: a later EV_UPSTREAM does not change the server */
    /* The current stream. */
    bool open;
    int family;       /* AF_INET or AF_INET6 */
    unsigned streams; /* streams opened so far: the next one's client port is bumped by it */
    struct peer c, s;
    uint64_t now_us;   /* timestamp of the packets being written */
    uint64_t start_us; /* EV_START's time: the first handshake's (0: none) */
    uint8_t frame[FRAME_MAX];
};

/* ---- addresses ---------------------------------------------------------------------------- */

/* The family of ss (IPv4-mapped IPv6 as AF_INET) with its address in addr and port in *port,
 * or 0 when ss holds no IP address. */
static int ip_of(const struct sockaddr_storage *ss, uint8_t addr[16], uint16_t *port)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(addr, 0, 16);
    *port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        memcpy(addr, &in->sin_addr, 4);
        *port = ntohs(in->sin_port);
        return AF_INET;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        *port = ntohs(in6->sin6_port);
        if (memcmp(in6->sin6_addr.s6_addr, mapped, sizeof mapped) == 0) {
            memcpy(addr, in6->sin6_addr.s6_addr + 12, 4);
            return AF_INET;
        }
        memcpy(addr, in6->sin6_addr.s6_addr, 16);
        return AF_INET6;
    }
    return 0;
}

/* A documentation address (RFC 5737, RFC 3849) for a side nothing told about: host 1 is the
 * client, 2 the server. */
static void doc_addr(int family, uint8_t host, uint8_t addr[16])
{
    static const uint8_t v4[16] = {192, 0, 2, 0}, v6[16] = {0x20, 0x01, 0x0d, 0xb8};
    memcpy(addr, family == AF_INET ? v4 : v6, 16);
    addr[family == AF_INET ? 3 : 15] = host;
}

/* The port after p for another stream of the same client: never 0, never the server's. */
static uint16_t next_port(uint16_t p, uint16_t server)
{
    do p = p == 65535 ? 1024 : (uint16_t)(p + 1);
    while (p == server);
    return p;
}

/* splitmix64: well-spread initial sequence numbers from the session and stream numbers. */
static uint32_t isn(uint64_t session, unsigned stream, unsigned side)
{
    uint64_t z = session * 0x9e3779b97f4a7c15ULL + stream * 2 + side + 1;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (uint32_t)(z ^ (z >> 31));
}

/* Sets family, both peers' addresses and ports for the stream about to open (see the top). */
static void choose_endpoints(struct pcap_writer *p)
{
    uint8_t ca[16], la[16], ua[16];
    uint16_t cport, lport, uport;
    int cf = ip_of(&p->client, ca, &cport);
    int lf = ip_of(&p->listener, la, &lport);
    int uf = ip_of(&p->upstream, ua, &uport);
    int family = cf ? cf : uf ? uf : lf ? lf : AF_INET;
    p->family = family;
    if (cf)
        memcpy(p->c.addr, ca, 16);
    else
        doc_addr(family, 1, p->c.addr);
    if (uf == family)
        memcpy(p->s.addr, ua, 16);
    else if (lf == family)
        memcpy(p->s.addr, la, 16);
    else
        doc_addr(family, 2, p->s.addr);
    p->s.port = lf && lport == 587 ? 587 : 25;
    uint16_t port = cport ? cport : 49152;
    if (port == p->s.port) port = next_port(port, p->s.port);
    for (unsigned i = 0; i < p->streams; i++) port = next_port(port, p->s.port);
    p->c.port = port;
    static const uint8_t cmac[6] = {2, 0, 0, 0, 0, 1}, smac[6] = {2, 0, 0, 0, 0, 2};
    memcpy(p->c.mac, cmac, 6);
    memcpy(p->s.mac, smac, 6);
}

/* ---- frames ------------------------------------------------------------------------------- */

static void put16(uint8_t *b, uint16_t v)
{
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
}

static void put32(uint8_t *b, uint32_t v)
{
    put16(b, (uint16_t)(v >> 16));
    put16(b + 2, (uint16_t)v);
}

/* The one's-complement sum of b (RFC 1071), added to sum, not folded. Four octets at a time
 * in host order, swapped once at the end (RFC 1071 2.B: the sum does not depend on the byte
 * order): a 20 MB message is 20 MB of payload to sum. */
static uint32_t sum16(uint32_t sum, const uint8_t *b, size_t n)
{
    size_t i = 0;
    uint64_t acc = 0;
    for (uint32_t w; i + 4 <= n; i += 4) {
        memcpy(&w, b + i, 4);
        acc += w;
    }
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    acc = (acc >> 8 | acc << 8) & 0xffff;
#endif
    sum += (uint32_t)acc;
    for (; i + 1 < n; i += 2) sum += (uint32_t)(b[i] << 8 | b[i + 1]);
    if (n & 1) sum += (uint32_t)(b[n - 1] << 8);
    return sum;
}

static uint16_t fold(uint32_t sum)
{
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* Writes the IP header for a tcp_len-octet segment from `from` to `to` at ip; returns its
 * length. The pseudo-header sum for the TCP checksum goes to *pseudo. */
static size_t put_ip(struct pcap_writer *p, uint8_t *ip, struct peer *from, const struct peer *to,
                     size_t tcp_len, uint32_t *pseudo)
{
    if (p->family == AF_INET) {
        memset(ip, 0, IP4_LEN);
        ip[0] = 0x45;
        put16(ip + 2, (uint16_t)(IP4_LEN + tcp_len));
        put16(ip + 4, from->ip_id++);
        ip[6] = 0x40; /* don't fragment */
        ip[8] = 64;   /* TTL */
        ip[9] = IPPROTO_TCP;
        memcpy(ip + 12, from->addr, 4);
        memcpy(ip + 16, to->addr, 4);
        put16(ip + 10, fold(sum16(0, ip, IP4_LEN)));
        *pseudo = sum16(0, ip + 12, 8) + IPPROTO_TCP + (uint32_t)tcp_len;
        return IP4_LEN;
    }
    memset(ip, 0, IP6_LEN);
    ip[0] = 0x60;
    put16(ip + 4, (uint16_t)tcp_len);
    ip[6] = IPPROTO_TCP;
    ip[7] = 64; /* hop limit */
    memcpy(ip + 8, from->addr, 16);
    memcpy(ip + 24, to->addr, 16);
    *pseudo = sum16(0, ip + 8, 32) + IPPROTO_TCP + (uint32_t)tcp_len;
    return IP6_LEN;
}

/* Appends one packet to the file. */
static void dump(struct pcap_writer *p, size_t len)
{
    struct pcap_pkthdr h = {.caplen = (bpf_u_int32)len, .len = (bpf_u_int32)len};
    h.ts.tv_sec = (time_t)(p->now_us / 1000000);
    h.ts.tv_usec = (suseconds_t)(p->now_us % 1000000);
    pcap_dump((u_char *)p->dump, &h, p->frame);
}

/* One TCP segment from the client (from_client) or the server, with flags and n <= MSS octets
 * of payload; the sender's next sequence number advances past it. */
static void segment(struct pcap_writer *p, bool from_client, uint8_t flags, const uint8_t *payload,
                    size_t n)
{
    struct peer *from = from_client ? &p->c : &p->s, *to = from_client ? &p->s : &p->c;
    const uint8_t *src_mac = from->mac, *dst_mac = to->mac;
    uint8_t *f = p->frame;
    memcpy(f, dst_mac, 6);
    memcpy(f + 6, src_mac, 6);
    put16(f + 12, p->family == AF_INET ? 0x0800 : 0x86dd);
    size_t tcp_hdr = flags & TH_SYN ? TCP_SYN_LEN : TCP_LEN;
    uint32_t sum;
    uint8_t *tcp = f + ETH_LEN + put_ip(p, f + ETH_LEN, from, to, tcp_hdr + n, &sum);
    memset(tcp, 0, tcp_hdr);
    put16(tcp, from->port);
    put16(tcp + 2, to->port);
    put32(tcp + 4, from->next_seq);
    put32(tcp + 8, flags & TH_ACK ? to->next_seq : 0);
    tcp[12] = (uint8_t)(tcp_hdr / 4 << 4);
    tcp[13] = flags;
    put16(tcp + 14, WINDOW);
    if (flags & TH_SYN) { /* MSS option */
        tcp[20] = 2;
        tcp[21] = 4;
        put16(tcp + 22, MSS);
    }
    if (n) memcpy(tcp + tcp_hdr, payload, n);
    put16(tcp + 16, fold(sum16(sum, tcp, tcp_hdr + n)));
    dump(p, (size_t)(tcp + tcp_hdr + n - f));
    from->next_seq += (uint32_t)n + (flags & TH_SYN ? 1 : 0) + (flags & TH_FIN ? 1 : 0);
}

/* ---- streams ------------------------------------------------------------------------------ */

static void flush(struct pcap_writer *p)
{
    if (p->failed || pcap_dump_flush(p->dump) == 0) return;
    p->failed = true;
    fprintf(stderr, "smtptap: pcap capture %s: write failed (%s); no more packets written to it\n",
            p->path, strerror(errno));
}

/* A new stream with its three-way handshake. */
static void open_stream(struct pcap_writer *p)
{
    choose_endpoints(p);
    p->c.next_seq = isn(p->session, p->streams, 0);
    p->s.next_seq = isn(p->session, p->streams, 1);
    uint64_t now = p->now_us;
    if (p->streams == 0 && p->start_us) p->now_us = p->start_us; /* when the client connected */
    p->streams++;
    p->open = true;
    segment(p, true, TH_SYN, NULL, 0);
    segment(p, false, TH_SYN | TH_ACK, NULL, 0);
    segment(p, true, TH_ACK, NULL, 0);
    p->now_us = now;
}

/* FIN/ACK both ways: the client's FIN, the server's FIN that acknowledges it, the last ACK. */
static void close_stream(struct pcap_writer *p)
{
    if (!p->open) return;
    segment(p, true, TH_FIN | TH_ACK, NULL, 0);
    segment(p, false, TH_FIN | TH_ACK, NULL, 0);
    segment(p, true, TH_ACK, NULL, 0);
    p->open = false;
    flush(p);
}

/* One EV_WIRE chunk, whatever its size: MSS segments, the receiver's ACK after every
 * ACK_EVERY of them and after the last. */
static void chunk(struct pcap_writer *p, bool from_client, const uint8_t *b, size_t len)
{
    if (!p->open) open_stream(p);
    unsigned unacked = 0;
    while (len) {
        size_t n = len < MSS ? len : MSS;
        segment(p, from_client, TH_ACK | (n == len ? TH_PSH : 0), b, n);
        b += n;
        len -= n;
        if (++unacked == ACK_EVERY || !len) {
            segment(p, !from_client, TH_ACK, NULL, 0);
            unacked = 0;
        }
    }
    if (!from_client && !p->base.flush_by_owner) flush(p);
}

/* ---- the writer --------------------------------------------------------------------------- */

static void pcap_writer_write(struct event_writer *w, const struct event *ev)
{
    struct pcap_writer *p = (struct pcap_writer *)w;
    if (p->failed) return;
    if (!p->have_session) p->session = ev->session, p->have_session = true;
    if (ev->wall_us > p->now_us) p->now_us = ev->wall_us;
    switch (ev->kind) {
    case EV_START:
        if (!ev->facts) return;
        if (!p->streams) p->start_us = p->now_us;
        p->client = ev->facts->endpoints.a;
        p->listener = ev->facts->endpoints.b;
        return;
    case EV_UPSTREAM:
        if (ev->facts && !p->seen_wire) p->upstream = ev->facts->endpoints.a;
        return;
    case EV_WIRE:
        p->seen_wire = true;
        if (!ev->len || !ev->bytes || (ev->dir != DIR_C2S && ev->dir != DIR_S2C)) return;
        chunk(p, ev->dir == DIR_C2S, ev->bytes, ev->len);
        return;
    case EV_CLIENT_TLS:
    case EV_END: close_stream(p); return;
    default: return; /* the other kinds say nothing that is on the wire */
    }
}

static void pcap_writer_flush(struct event_writer *w)
{
    flush((struct pcap_writer *)w);
}

static void pcap_writer_close(struct event_writer *w)
{
    struct pcap_writer *p = (struct pcap_writer *)w;
    if (!p->failed) close_stream(p); /* a session that ended without EV_END */
    flush(p);
    pcap_dump_close(p->dump);
    pcap_close(p->dead);
    free(p->file_buffer);
    free(p->path);
    free(p);
}

struct event_writer *pcap_writer_new(const char *path, char *err, size_t err_size)
{
    int fd = capture_create_file(path);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        snprintf(err, err_size, "cannot create capture file %s: %s", path,
                 strerror(fd < 0 ? -fd : errno));
        if (fd >= 0) close(fd);
        return NULL;
    }
    char *file_buffer = malloc(FILE_BUFFER); /* its pages are touched only as they fill */
    if (!file_buffer) abort();
    setvbuf(f, file_buffer, _IOFBF, FILE_BUFFER);
    pcap_t *dead = pcap_open_dead(DLT_EN10MB, SNAPLEN);
    pcap_dumper_t *dumper = dead ? pcap_dump_fopen(dead, f) : NULL;
    if (!dumper) {
        snprintf(err, err_size, "cannot start pcap capture %s: %s", path,
                 dead ? pcap_geterr(dead) : "pcap_open_dead failed");
        if (dead) pcap_close(dead);
        fclose(f);
        free(file_buffer);
        unlink(path);
        return NULL;
    }
    struct pcap_writer *p = calloc(1, sizeof *p);
    if (!p || !(p->path = strdup(path))) abort();
    p->base.write = pcap_writer_write;
    p->base.close = pcap_writer_close;
    p->base.flush = pcap_writer_flush;
    p->dead = dead;
    p->dump = dumper;
    p->file_buffer = file_buffer;
    flush(p); /* the file header: a reader can open the file at once */
    return &p->base;
}
