// An experiment on what a periodic wake-up costs on this VM (docs/performance.md, "Where the time goes"):
// bare_timer's loop in a thread, with something added per wake-up.
//   wake_footprint HZ SECONDS MODE N DENSE FILE...
//   MODE 0: clock_nanosleep, then pread each FILE (the floor)            (N 0, DENSE 0)
//   MODE 1: the same with one futex(FUTEX_WAIT_BITSET) wait, as the daemon's sampling thread
//   MODE 2: the floor, then N cache lines of memory visited in a random order (pointer chase):
//           DENSE 0 spreads them 6 to a 4 KB page over N/6 pages, DENSE 1 packs them into N/64 pages
// Prints the thread's CPU per second of run. Run several copies side by side (started a few ms apart:
// where a wake-up falls against the machine's other timers changes its cost) and compare means.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#include <time.h>
#include <unistd.h>
static long ns(struct timespec t) { return t.tv_sec * 1000000000L + t.tv_nsec; }
static int mode, touchkb, nthreads; /* nthreads: DENSE for MODE 2, idle threads otherwise */ static double hz, seconds; static int nf; static int fds[64];
static int fw;
static void *idle(void *a) { (void)a; for (;;) pause(); return 0; }
static void *loop(void *a) {
  (void)a;
  long interval = (long)(1e9 / hz), n = (long)(seconds * hz);
  long slack = interval / 1000 < 1000 ? 1000 : interval / 1000;
  if (slack < 50000) prctl(PR_SET_TIMERSLACK, slack, 0, 0, 0);
  char *mem = touchkb ? malloc(touchkb * 1024) : 0; if (mem) memset(mem, 1, touchkb*1024);
  if (mem && mode==2) { /* touchkb = number of lines; spread over 54 pages each 6 lines, in random order */
    free(mem); int npages = touchkb/6 + 1; mem = aligned_alloc(4096, npages*4096L*16); int n = touchkb; int *idx = malloc(n*sizeof(int));
    for (int i=0;i<n;i++) idx[i] = nthreads ? i*64 : (i/6)*16*4096 + (i%6)*640; /* dense (threads arg) or 6 per page, pages 64K apart */
    for (int i=n-1;i>0;i--){int j=rand()%(i+1);int t=idx[i];idx[i]=idx[j];idx[j]=t;}
    for (int i=0;i<n;i++) *(void**)(mem+idx[i]) = mem+idx[(i+1)%n];
    mem = mem + idx[0]; void **q=(void**)mem; (void)q; }
  char buf[32]; struct timespec t0; clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long w = 1; w <= n; w++) {
    long d = ns(t0) + w * interval; struct timespec dl = {d / 1000000000L, d % 1000000000L};
    if (mode == 1) syscall(SYS_futex, &fw, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, 0, &dl, 0, FUTEX_BITSET_MATCH_ANY);
    else clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &dl, 0);
    for (int k = 0; k < nf; k++) pread(fds[k], buf, sizeof buf, 0);
    if (mem && mode==2) { void **p = (void**)mem; for (int i = 0; i < touchkb; i++) p = (void**)*p; fw += (p==0); } else if (mem) for (int i = 0; i < touchkb * 1024; i += 64) mem[i]++;
  }
  struct timespec c; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c);
  printf("mode=%d touch=%dKB threads=%d  %.3f ms/s\n", mode, touchkb, nthreads, ns(c) / 1e6 / seconds);
  return 0;
}
int main(int argc, char **argv) {
  hz = atof(argv[1]); seconds = atof(argv[2]); mode = atoi(argv[3]); touchkb = atoi(argv[4]); nthreads = atoi(argv[5]);
  for (int i = 6; i < argc; i++) if ((fds[nf] = open(argv[i], O_RDONLY)) >= 0) nf++;
  pthread_t t;
  if (mode != 2) for (int i = 0; i < nthreads; i++) pthread_create(&t, 0, idle, 0);
  pthread_create(&t, 0, loop, 0); pthread_join(t, 0); return 0;
}
