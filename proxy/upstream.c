/* upstream.c - reaching the upstream: original destination for transparent mode, numeric
 * addresses, and connect errors in words (see upstream.h). */
#include "smtptap/upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <string.h>

int upstream_original_dst(uv_tcp_t *client, struct sockaddr_storage *out)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)client, &fd) < 0) return -EBADF;
    struct sockaddr_storage local;
    int len = sizeof local;
    if (uv_tcp_getsockname(client, (struct sockaddr *)&local, &len) < 0) return -EBADF;
    socklen_t sl = sizeof *out;
    memset(out, 0, sizeof *out);
    int rc = local.ss_family == AF_INET6 ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, out, &sl)
                                         : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, out, &sl);
    if (rc < 0) return -errno;
    /* Without a NAT entry some kernels answer with the local address itself. */
    if (sockaddr_equal((struct sockaddr *)out, (struct sockaddr *)&local)) return -ENOENT;
    return 0;
}

bool sockaddr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family) return false;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return false;
}

bool sockaddr_from_numeric(const char *host, unsigned port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0) return true;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)out) == 0) return true;
    return false;
}

const char *upstream_connect_reason(int uverr)
{
    switch (uverr) {
    case UV_ECONNREFUSED: return "connection refused";
    case UV_ETIMEDOUT: return "connection timed out";
    case UV_EHOSTUNREACH: return "no route to host";
    case UV_ENETUNREACH: return "network unreachable";
    case UV_ECONNRESET: return "connection reset";
    case UV_EADDRNOTAVAIL: return "address not available";
    default: return uv_strerror(uverr);
    }
}
