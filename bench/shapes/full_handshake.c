// LD_PRELOAD for wrk in bench/shapes/transport.sh (the `tls` shape's handshake
// rows): every TLS connection does a full handshake, and the count proves it.
//
// wrk reuses one SSL object per connection slot: on reconnecting it calls
// SSL_shutdown and SSL_clear, which keep the session, so the next SSL_connect
// offers it and a server that issued a ticket resumes it (no certificate, no
// signature: the key type would not matter). Before a handshake starts this
// drops the session, so none is offered. After each completed handshake it
// counts full and resumed ones; at exit it writes "full=N resumed=N" to
// $FULL_HANDSHAKE_REPORT, if this process did any handshake at all (so the
// `timeout` and `taskset` around wrk, which load this too, write nothing).
//
// OpenSSL's types are opaque here, so no headers are needed:
//   cc -O2 -shared -fPIC -o full_handshake.so full_handshake.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
int SSL_in_before(const SSL *s);
int SSL_set_session(SSL *s, SSL_SESSION *session);
int SSL_session_reused(const SSL *s);

static atomic_long full, resumed, calls;

int SSL_connect(SSL *s) {
  static int (*real)(SSL *);
  if (!real) {
    real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
    if (!real) abort();
  }
  calls++;
  // Only before the first step: a non-blocking handshake calls this again
  // after each WANT_READ / WANT_WRITE.
  if (SSL_in_before(s)) SSL_set_session(s, NULL);
  int r = real(s);
  if (r == 1) {
    if (SSL_session_reused(s))
      resumed++;
    else
      full++;
  }
  return r;
}

__attribute__((destructor)) static void report(void) {
  const char *path = getenv("FULL_HANDSHAKE_REPORT");
  FILE *f;
  if (!path || calls == 0 || !(f = fopen(path, "w"))) return;
  fprintf(f, "full=%ld resumed=%ld\n", (long)full, (long)resumed);
  fclose(f);
}
