/* Floor for a kernel crossing:
 *   syscall_eventfd_write  write(2) of 8 bytes to a non-blocking eventfd,
 *                          what uv_async_send costs when it must wake the
 *                          loop (ns/call)
 *   syscall_getppid        a bare syscall(SYS_getppid) (ns/call) */
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "floor.h"

static uint64_t bench_eventfd(void *p, uint64_t n) {
  int fd = *(int *)p;
  uint64_t one = 1, sink;
  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < n; i++) {
    if (write(fd, &one, sizeof one) != sizeof one) {
      perror("eventfd write");
      exit(1);
    }
  }
  uint64_t el = now_ns() - t0;
  if (read(fd, &sink, sizeof sink) != sizeof sink) { /* reset the counter */
    perror("eventfd read");
    exit(1);
  }
  return el;
}

static uint64_t bench_getppid(void *p, uint64_t n) {
  (void)p;
  volatile long sink = 0;
  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < n; i++) sink += syscall(SYS_getppid);
  (void)sink;
  return now_ns() - t0;
}

int main(void) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) {
    perror("eventfd");
    return 1;
  }
  report("syscall_eventfd_write", measure_ns(bench_eventfd, &fd, 1000), "ns/call");
  report("syscall_getppid", measure_ns(bench_getppid, NULL, 1000), "ns/call");
  close(fd);
  return 0;
}
