# Sourced by scripts/benchmark and Benchmarks/side-by-side: the CPU of a running process over a span
# of seconds, from its threads' schedstat (the kernel's nanosecond run time), so that a daemon and the
# C floor are compared over exactly the same seconds, with no start-up or shutdown in either.

# CPU nanoseconds so far of a process's threads: all, the sampling thread, the others. A thread that
# ended before the call is not counted (the daemon's threads live for the whole run).
threads_ns() {
  local all=0 sampler=0 t n
  for t in /proc/"$1"/task/*; do
    read -r n _ < "$t/schedstat" 2>/dev/null || continue
    all=$((all + n))
    [ "$(cat "$t/comm" 2>/dev/null)" = rapl-sampler ] && sampler=$((sampler + n))
  done
  echo "$all $sampler $((all - sampler))"
}

# The measured process: the process at the bottom of PID's first children (PID if it has none), so
# the same call finds the daemon under a measure.py, and under the subshell a backgrounded shell
# function runs in. A thread's children file ends with a space and is empty for threads that started
# nothing, so the first pid of all of them is taken.
measured_pid() {
  local p=$1 c
  while c=$(cat /proc/"$p"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -m1 .) && [ -n "$c" ]; do p=$c; done
  echo "$p"
}

# The steady span of a run of S seconds: from 10 s (a quarter of the run if shorter) to 2 s before the end.
steady_span() { echo $(($1 / 4 < 10 ? $1 / 4 : 10)) $(($1 - 2)); }
