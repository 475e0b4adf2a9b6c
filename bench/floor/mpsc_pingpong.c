/* Floor for the Go->loop completion path: a Vyukov intrusive MPSC queue
 * plus uv_async_send to wake a libuv loop.
 *   mpsc_pingpong_rtt     (a) one request at a time: the loop thread hands a
 *                         request to a worker thread through a mutex +
 *                         condition variable; the worker pushes the
 *                         completion and uv_async_send()s; the loop's async
 *                         callback drains it and sends the next (ns/trip)
 *   mpsc_inflight         (b) 10,000 requests in flight, one worker thread;
 *                         requests go loop->worker on a second MPSC queue
 *                         (worker sleeps on a condvar when empty), the
 *                         loop drains completions with a budget of BUDGET per
 *                         callback and re-issues each (completions/s)
 *   mpsc_push_drain       (c) push + pop of one node, single thread
 *                         (ns/item, batches of 1024)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include "floor.h"

/* ---- Vyukov intrusive MPSC queue ---------------------------------------- */

struct node {
  _Atomic(struct node *) next;
};

struct mpsc {
  _Atomic(struct node *) head; /* producers push here */
  char pad[64 - sizeof(void *)];
  struct node *tail;           /* consumer pops here */
  struct node stub;
};

static void mpsc_init(struct mpsc *q) {
  atomic_store_explicit(&q->stub.next, NULL, memory_order_relaxed);
  atomic_store_explicit(&q->head, &q->stub, memory_order_relaxed);
  q->tail = &q->stub;
}

static void mpsc_push(struct mpsc *q, struct node *n) {
  atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
  struct node *prev = atomic_exchange_explicit(&q->head, n, memory_order_acq_rel);
  atomic_store_explicit(&prev->next, n, memory_order_release);
}

/* Returns NULL when empty, or (transiently) while a push is half done; the
 * pusher's wake-up that follows its push covers that case. */
static struct node *mpsc_pop(struct mpsc *q) {
  struct node *tail = q->tail;
  struct node *next = atomic_load_explicit(&tail->next, memory_order_acquire);
  if (tail == &q->stub) {
    if (!next) return NULL;
    q->tail = next;
    tail = next;
    next = atomic_load_explicit(&next->next, memory_order_acquire);
  }
  if (next) {
    q->tail = next;
    return tail;
  }
  if (tail != atomic_load_explicit(&q->head, memory_order_acquire)) return NULL;
  mpsc_push(q, &q->stub);
  next = atomic_load_explicit(&tail->next, memory_order_acquire);
  if (next) {
    q->tail = next;
    return tail;
  }
  return NULL;
}

/* ---- (c) push + drain, single thread ------------------------------------ */

enum { BATCH = 1024 };
static struct node batch_nodes[BATCH];

static uint64_t bench_push_drain(void *p, uint64_t n) {
  struct mpsc *q = p;
  uint64_t done = 0, t0 = now_ns();
  while (done < n) {
    uint64_t k = n - done < BATCH ? n - done : BATCH;
    for (uint64_t i = 0; i < k; i++) mpsc_push(q, &batch_nodes[i]);
    for (uint64_t i = 0; i < k; i++) {
      if (!mpsc_pop(q)) {
        fprintf(stderr, "push_drain: lost item\n");
        exit(1);
      }
    }
    done += k;
  }
  return now_ns() - t0;
}

/* ---- (a) sequential ping-pong ------------------------------------------- */

struct pp {
  uv_loop_t loop;
  uv_async_t async;
  struct mpsc cq;           /* completions, worker -> loop */
  struct node item;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t req_seq;         /* guarded by mu */
  bool stop;                /* guarded by mu */
  uint64_t want, got;
};

static void *pp_worker(void *p) {
  struct pp *s = p;
  uint64_t seen = 0;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    while (s->req_seq == seen && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
    bool stop = s->stop;
    seen = s->req_seq;
    pthread_mutex_unlock(&s->mu);
    if (stop) return NULL;
    mpsc_push(&s->cq, &s->item);
    uv_async_send(&s->async);
  }
}

static void pp_request(struct pp *s) {
  pthread_mutex_lock(&s->mu);
  s->req_seq++;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void pp_on_async(uv_async_t *a) {
  struct pp *s = a->data;
  while (mpsc_pop(&s->cq)) {
    if (++s->got < s->want) {
      pp_request(s);
    } else {
      uv_close((uv_handle_t *)a, NULL);
      return;
    }
  }
}

static uint64_t bench_pingpong(void *p, uint64_t n) {
  (void)p;
  struct pp s = {.want = n};
  uv_loop_init(&s.loop);
  uv_async_init(&s.loop, &s.async, pp_on_async);
  s.async.data = &s;
  mpsc_init(&s.cq);
  pthread_mutex_init(&s.mu, NULL);
  pthread_cond_init(&s.cv, NULL);
  pthread_t th;
  pthread_create(&th, NULL, pp_worker, &s);
  uint64_t t0 = now_ns();
  pp_request(&s);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  uint64_t el = now_ns() - t0;
  pthread_mutex_lock(&s.mu);
  s.stop = true;
  pthread_cond_signal(&s.cv);
  pthread_mutex_unlock(&s.mu);
  pthread_join(th, NULL);
  uv_loop_close(&s.loop);
  pthread_mutex_destroy(&s.mu);
  pthread_cond_destroy(&s.cv);
  return el;
}

/* ---- (b) 10,000 in flight, one worker ------------------------------------ */

enum { INFLIGHT = 10000, BUDGET = 256 };

struct tp {
  uv_loop_t loop;
  uv_async_t async;
  struct mpsc cq;           /* completions, worker -> loop */
  struct mpsc rq;           /* requests, loop -> worker */
  struct node items[INFLIGHT];
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_int sleeping;
  atomic_bool stop;
  uint64_t want, issued, got;
};

static void tp_wake(struct tp *s) {
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&s->sleeping, memory_order_relaxed)) {
    pthread_mutex_lock(&s->mu);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
  }
}

static void *tp_worker(void *p) {
  struct tp *s = p;
  for (;;) {
    struct node *n = mpsc_pop(&s->rq);
    if (!n) {
      pthread_mutex_lock(&s->mu);
      atomic_store(&s->sleeping, 1);
      atomic_thread_fence(memory_order_seq_cst);
      n = mpsc_pop(&s->rq);
      if (!n && !atomic_load(&s->stop)) pthread_cond_wait(&s->cv, &s->mu);
      atomic_store(&s->sleeping, 0);
      pthread_mutex_unlock(&s->mu);
      if (!n) {
        if (atomic_load(&s->stop)) return NULL;
        continue;
      }
    }
    /* the "work" is nothing: complete it */
    mpsc_push(&s->cq, n);
    uv_async_send(&s->async);
  }
}

static void tp_on_async(uv_async_t *a) {
  struct tp *s = a->data;
  int budget = BUDGET;
  bool reissued = false;
  struct node *n;
  while (budget > 0 && (n = mpsc_pop(&s->cq))) {
    budget--;
    s->got++;
    if (s->issued < s->want) {
      s->issued++;
      mpsc_push(&s->rq, n);
      reissued = true;
    }
  }
  if (reissued) tp_wake(s);
  if (s->got == s->want) {
    uv_close((uv_handle_t *)a, NULL);
  } else if (budget == 0) {
    uv_async_send(a); /* more may be queued: come back next iteration */
  }
}

static uint64_t bench_inflight(void *p, uint64_t n) {
  struct tp *s = p;
  if (n < INFLIGHT) n = INFLIGHT;
  uv_loop_init(&s->loop);
  uv_async_init(&s->loop, &s->async, tp_on_async);
  s->async.data = s;
  mpsc_init(&s->cq);
  mpsc_init(&s->rq);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  atomic_store(&s->sleeping, 0);
  atomic_store(&s->stop, false);
  s->want = n;
  s->issued = s->got = 0;
  pthread_t th;
  pthread_create(&th, NULL, tp_worker, s);
  uint64_t t0 = now_ns();
  for (int i = 0; i < INFLIGHT; i++) mpsc_push(&s->rq, &s->items[i]);
  s->issued = INFLIGHT;
  tp_wake(s);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  uint64_t el = now_ns() - t0;
  atomic_store(&s->stop, true);
  pthread_mutex_lock(&s->mu);
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  pthread_join(th, NULL);
  uv_loop_close(&s->loop);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  return el;
}

int main(void) {
  static struct mpsc q;
  mpsc_init(&q);
  report("mpsc_push_drain", measure_ns(bench_push_drain, &q, 1 << 16), "ns/item");

  report("mpsc_pingpong_rtt", measure_ns(bench_pingpong, NULL, 1000), "ns/trip");

  static struct tp s;
  double ns = measure_ns(bench_inflight, &s, 100000);
  report("mpsc_inflight_10k", 1e9 / ns, "completions/s");
  return 0;
}
