/* The stand-in profiler of benches/native_instants.sh (BURST=...): a thread pinned to one CPU
 * that wakes at random intervals (exponential, mean 1/RATE s, as strobe's rounds) and takes
 * that CPU for SPIN_US microseconds, at SCHED_FIFO priority when RT is 1 (so that it preempts
 * whatever runs there at once), else as an ordinary thread. It reads nothing: what it shows
 * is what a mere preemption at that rate does to how a target's threads run.
 *
 *   preempt_burst RATE SPIN_US CPU RT
 */
#define _GNU_SOURCE
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s RATE SPIN_US CPU RT\n", argv[0]);
        return 2;
    }
    double mean_ns = 1e9 / atof(argv[1]);
    long long spin_ns = atoll(argv[2]) * 1000LL;
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(atoi(argv[3]), &cpus);
    if (sched_setaffinity(0, sizeof cpus, &cpus) != 0) {
        perror("sched_setaffinity");
        return 1;
    }
    if (atoi(argv[4])) {
        struct sched_param prio = {.sched_priority = 10};
        if (sched_setscheduler(0, SCHED_FIFO, &prio) != 0) {
            perror("sched_setscheduler (SCHED_FIFO needs root or CAP_SYS_NICE)");
            return 1;
        }
    }
    srand48(now_ns());
    for (;;) {
        long long gap = (long long)(-log(1.0 - drand48()) * mean_ns);
        struct timespec ts = {gap / 1000000000LL, gap % 1000000000LL};
        nanosleep(&ts, NULL);
        long long until = now_ns() + spin_ns;
        while (now_ns() < until) {
        }
    }
}
