/* wall_clock_shift: an LD_PRELOAD library for the clock-jump test (adversarial_faults_test).
 *
 * It moves the wall clock of the process it is loaded into, and nothing else: clock_gettime for
 * CLOCK_REALTIME (and its coarse variant), gettimeofday and time return the real time plus an
 * offset in whole seconds, read from the file STRELAY_WALL_CLOCK_OFFSET_FILE names at every
 * call (a signed decimal number, e.g. "+86400" or "-3600"). CLOCK_MONOTONIC and every wait
 * (timerfds, epoll, condition variables, sleeps) stay untouched, as when an operator or NTP
 * steps a machine's clock.
 *
 * Why not libfaketime: Debian 12's libfaketime 0.9.10 also rewrites waits. It converts an
 * absolute timerfd_settime deadline as if it were on CLOCK_REALTIME, whatever the timer's clock,
 * and shifts the deadlines of condition variables on CLOCK_MONOTONIC. Asio arms its timerfd
 * (CLOCK_MONOTONIC) with an absolute deadline of 1 ns whenever a timer is already due, so under
 * libfaketime an io_context can miss a due timer until some other event wakes it. Shown with a
 * minimal Asio program: under libfaketime with an offset of +3600 s, a steady_timer already due
 * when armed, and a 3 s timer armed after it, never fired (killed after 10 s); under this
 * library both fire on time. The likely cause of one CI run where the relay, under ASan, did not
 * end its drain within 10 s of SIGTERM. This file is only test support; the relay is never built
 * with it.
 *
 * The writer replaces the file by rename(2), so a reader sees the old offset or the new one;
 * an unreadable file keeps the last offset read. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static _Atomic long last_offset;

static long offset_seconds(void) {
  const char* path = getenv("STRELAY_WALL_CLOCK_OFFSET_FILE");
  if (path == NULL) return 0;
  FILE* file = fopen(path, "re");
  if (file == NULL) return atomic_load(&last_offset);
  long offset = 0;
  if (fscanf(file, "%ld", &offset) == 1) atomic_store(&last_offset, offset);
  fclose(file);
  return atomic_load(&last_offset);
}

typedef int (*clock_gettime_fn)(clockid_t, struct timespec*);

static int real_clock_gettime(clockid_t clock, struct timespec* when) {
  static _Atomic(clock_gettime_fn) real;
  clock_gettime_fn fn = atomic_load(&real);
  if (fn == NULL) {
    void* symbol = dlsym(RTLD_NEXT, "clock_gettime");
    memcpy(&fn, &symbol, sizeof fn); /* ISO C has no cast from object to function pointer */
    atomic_store(&real, fn);
  }
  return fn(clock, when);
}

int clock_gettime(clockid_t clock, struct timespec* when) {
  const int result = real_clock_gettime(clock, when);
  if (result == 0 && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)) {
    when->tv_sec += offset_seconds();
  }
  return result;
}

int gettimeofday(struct timeval* restrict when, void* restrict zone) {
  (void)zone;
  struct timespec now;
  if (clock_gettime(CLOCK_REALTIME, &now) != 0) return -1;
  when->tv_sec = now.tv_sec;
  when->tv_usec = now.tv_nsec / 1000;
  return 0;
}

time_t time(time_t* out) {
  struct timespec now;
  if (clock_gettime(CLOCK_REALTIME, &now) != 0) return (time_t)-1;
  if (out != NULL) *out = now.tv_sec;
  return now.tv_sec;
}
