/*
** queue.c — the completion queue (Vyukov's intrusive MPSC) and how the
** loop's driver sleeps on it.
**
** Layer 0 (base). A driver with nothing to do either parks the Go way
** (MB_SLEEP_GO: the producer that finds it so readies it in user space)
** or sleeps in libuv when timers are pending (MB_SLEEP_UV: woken by
** uv_async_send). Producers learn which from one exchange.
*/
#include <stddef.h>

#include "mb.h"
#include "queue.h"

static void mb_queue_async_cb(uv_async_t *h) { (void)h; /* the step drains */ }

static void mb_queue_stub_push(mb_queue *q, mb_msg *m) {
  mb_msg *prev;
  __atomic_store_n(&m->next, NULL, __ATOMIC_RELAXED);
  prev = __atomic_exchange_n(&q->head, m, __ATOMIC_SEQ_CST);
  /* Between the exchange and this store the chain is broken; the consumer
  ** sees a non-empty queue it cannot pop yet and simply comes back. */
  __atomic_store_n(&prev->next, m, __ATOMIC_RELEASE);
}

int mb_queue_init(mb_queue *q, uv_loop_t *loop) {
  int rc;
  q->stub.next = NULL;
  q->head = &q->stub;
  q->tail = &q->stub;
  q->sleeping = MB_SLEEP_GO; /* no driver steps the loop until the first push */
  rc = uv_async_init(loop, &q->async, mb_queue_async_cb);
  if (rc != 0) return rc;
  uv_unref((uv_handle_t *)&q->async); /* it must not keep the loop alive */
  return 0;
}

void mb_queue_close(mb_queue *q) {
  uv_close((uv_handle_t *)&q->async, NULL);
}

/* Push, then claim the driver's sleep if it sleeps: the exchange makes
** exactly one producer responsible for the wake-up. A driver sleeping in
** libuv is woken here; one parked in Go is woken by our caller (return 1).
** The plain load first keeps the common case (driver busy) to a read. */
int mb_queue_push(mb_queue *q, mb_msg *m) {
  int was;
  mb_queue_stub_push(q, m);
  if (__atomic_load_n(&q->sleeping, __ATOMIC_SEQ_CST) == MB_SLEEP_NONE) return 0;
  was = __atomic_exchange_n(&q->sleeping, MB_SLEEP_NONE, __ATOMIC_SEQ_CST);
  if (was == MB_SLEEP_UV) uv_async_send(&q->async);
  return was == MB_SLEEP_GO;
}

/* Push as the goroutine that is about to step the loop: whoever holds the
** loop's token. The loop is no longer asleep, and nobody needs waking. A
** producer that claimed the sleep meanwhile has signalled; that wake-up
** is spurious now, and harmless. */
void mb_queue_push_driver(mb_queue *q, mb_msg *m) {
  __atomic_store_n(&q->sleeping, MB_SLEEP_NONE, __ATOMIC_SEQ_CST);
  mb_queue_stub_push(q, m);
}

mb_msg *mb_queue_pop(mb_queue *q) {
  mb_msg *tail = q->tail;
  mb_msg *next = __atomic_load_n(&tail->next, __ATOMIC_ACQUIRE);
  if (tail == &q->stub) {
    if (next == NULL) return NULL;
    q->tail = next;
    tail = next;
    next = __atomic_load_n(&next->next, __ATOMIC_ACQUIRE);
  }
  if (next != NULL) {
    q->tail = next;
    return tail;
  }
  if (tail != __atomic_load_n(&q->head, __ATOMIC_ACQUIRE))
    return NULL; /* a producer is between its exchange and its link */
  mb_queue_stub_push(q, &q->stub);
  next = __atomic_load_n(&tail->next, __ATOMIC_ACQUIRE);
  if (next != NULL) {
    q->tail = next;
    return tail;
  }
  return NULL;
}

/* Empty only when the stub is both ends: any producer that exchanged the
** head since makes this false, even before it linked its node. */
int mb_queue_empty(mb_queue *q) {
  return q->tail == &q->stub &&
         __atomic_load_n(&q->head, __ATOMIC_SEQ_CST) == &q->stub;
}

/* Park the Go way: claim the sleep, then look at the queue once more. A
** producer that pushed before the claim is seen here; one that pushes
** after it sees the claim and wakes the driver. Returns 0 if the queue
** was not empty after all (a producer that already took the claim will
** also signal: a spurious wake-up for the driver, which is harmless). */
int mb_queue_park_go(mb_queue *q) {
  __atomic_store_n(&q->sleeping, MB_SLEEP_GO, __ATOMIC_SEQ_CST);
  if (mb_queue_empty(q)) return 1;
  __atomic_store_n(&q->sleeping, MB_SLEEP_NONE, __ATOMIC_SEQ_CST);
  return 0;
}

/* Sleep in libuv until a timer or a producer's uv_async_send. */
void mb_queue_sleep_uv(mb_queue *q, uv_loop_t *loop) {
  __atomic_store_n(&q->sleeping, MB_SLEEP_UV, __ATOMIC_SEQ_CST);
  if (mb_queue_empty(q)) uv_run(loop, UV_RUN_ONCE);
  __atomic_store_n(&q->sleeping, MB_SLEEP_NONE, __ATOMIC_SEQ_CST);
}
