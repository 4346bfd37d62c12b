/* web_assets.h - the live web page (proxy/web/: HTML, CSS, JavaScript), compiled into the
 * binary at build time so that smtptap serves it with nothing installed beside it and no
 * build step beyond meson. */
#ifndef SMTPTAP_WEB_ASSETS_H
#define SMTPTAP_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
    const char *path;         /* as requested: "/", "/app.js", "/style.css" */
    const char *content_type; /* "text/html; charset=utf-8", ... */
    const unsigned char *data;
    size_t len;
};

/* The asset served at path (len bytes, not NUL-terminated; "/" and "/index.html" are the
 * page), or NULL. */
const struct web_asset *web_asset_find(const char *path, size_t len);

#endif
