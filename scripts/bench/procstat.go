package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuSeconds is a process's user+system CPU time, every thread included.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of pid %d: %w", pid, err)
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime (field 14) and stime (15) of a /proc/<pid>/stat
// line. The command (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatCPU(line string) (float64, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat line without a command: %q", line)
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state): utime is field 14, f[11].
	if len(f) < 13 {
		return 0, fmt.Errorf("stat line too short: %q", line)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat line with bad times: %q", line)
	}
	return float64(ut+st) / clockTicks, nil
}

// memMB returns VmRSS, VmHWM and RssAnon (private memory) of a process in
// MB (10^6 bytes).
func memMB(pid int) (rss, hwm, anon float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	m := parseStatus(string(b))
	return m["VmRSS"], m["VmHWM"], m["RssAnon"], nil
}

// pssMB returns a process's Pss (from smaps_rollup), in MB.
func pssMB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	return parseStatus(string(b))["Pss"], nil
}

// resetPeakRSS sets a process's VmHWM back to its VmRSS (clear_refs 5,
// Linux 4.0 and later), so that the next VmHWM is the peak from now on.
func resetPeakRSS(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak memory of pid %d: %w", pid, err)
	}
	return nil
}

// parseStatus reads the kB fields of /proc/<pid>/status, in MB.
func parseStatus(s string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 2 && f[1] == "kB" {
			if n, err := strconv.ParseFloat(f[0], 64); err == nil {
				out[k] = n * 1024 / 1e6
			}
		}
	}
	return out
}

// pin sets the CPU affinity of every thread of pid (taskset -a -p); cpu -1
// gives back every CPU.
func pin(pid, cpu int) error {
	var set unix.CPUSet
	if cpu < 0 {
		for i := 0; i < runtime.NumCPU(); i++ {
			set.Set(i)
		}
	} else {
		set.Set(cpu)
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return fmt.Errorf("list threads of pid %d: %w", pid, err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread may exit between the listing and here; that is fine.
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("pin thread %d of pid %d: %w", tid, pid, err)
		}
	}
	return nil
}

// loadAvg reads /proc/loadavg.
func loadAvg() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}

// busyProcesses names the processes, other than ours, that used the most
// CPU recently enough to matter: compilers and tests of other people.
func busyProcesses(exclude map[int]bool) []string {
	type proc struct {
		name string
		cpu  float64
	}
	var ps []proc
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(d))
		if exclude[pid] {
			continue
		}
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(s[j+1:])
		if len(f) < 13 || f[0] != "R" {
			continue // only what runs right now
		}
		c, _ := parseStatCPU(s)
		ps = append(ps, proc{name: s[i+1 : j], cpu: c})
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].cpu > ps[j].cpu })
	var out []string
	for i, p := range ps {
		if i == 8 {
			break
		}
		out = append(out, p.name)
	}
	return out
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func kernel() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
}

// cpuAccount splits the machine's CPU time (user and system, from
// /proc/stat) into the benchmark's own and other work's. Own processes are
// this one and its descendants (fortio, the lab's CLI), every process
// running the benchmark's meshlab binary (the lab daemon, control plane,
// sidecars, gateway) with their descendants (the pods' programs, nginx,
// haproxy), and kernel threads (the lab's veth traffic is processed there
// too). It samples every process's utime+stime+cutime+cstime: a child
// reaped by an own parent moves its whole time into the parent's cutime,
// so what was already counted for it is taken back; an own process reaped
// by init (the detached lab daemon, at down) loses only its last
// interval. Interrupt time is charged to no process and left out.
type cpuAccount struct {
	self    int
	bin     string
	started bool
	last    map[int]ownSample
	busy    float64 // machine CPU seconds at the last sample
	own     float64 // own CPU seconds accumulated since the first sample
}

type ownSample struct {
	ppid  int
	total float64
}

func newCPUAccount(self int, bin string) *cpuAccount {
	return &cpuAccount{self: self, bin: bin, last: map[int]ownSample{}}
}

// sample reads the machine and its processes once.
func (a *cpuAccount) sample() error {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return fmt.Errorf("read machine CPU time: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 4 || f[0] != "cpu" {
		return fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	busy := 0.0
	for _, v := range f[1:4] { // user, nice, system
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("unexpected /proc/stat line %q", line)
		}
		busy += n / clockTicks
	}

	type proc struct {
		ownSample
		root bool // own by itself, not by ancestry
	}
	procs := map[int]proc{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(d))
		st, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		ppid, total, ok := parseStatTree(string(st))
		if !ok {
			continue
		}
		exe, _ := os.Readlink(d + "/exe")
		root := pid == a.self || pid == 2 || ppid == 2 || (a.bin != "" && exe == a.bin)
		procs[pid] = proc{ownSample{ppid, total}, root}
	}
	var own func(pid, depth int) bool
	own = func(pid, depth int) bool {
		p, ok := procs[pid]
		if !ok || depth > 64 {
			return false
		}
		return p.root || own(p.ppid, depth+1)
	}
	now := map[int]ownSample{}
	for pid, p := range procs {
		if own(pid, 0) {
			now[pid] = p.ownSample
		}
	}
	if a.started {
		for pid, p := range now {
			a.own += p.total - a.last[pid].total // a new process: its whole time
		}
		for pid, p := range a.last {
			if _, alive := now[pid]; alive {
				continue
			}
			if _, parentOwn := now[p.ppid]; parentOwn {
				a.own -= p.total // now in the parent's cutime, counted above
			}
		}
	}
	a.started, a.last, a.busy = true, now, busy
	return nil
}

// parseStatTree reads ppid (field 4) and utime+stime+cutime+cstime (14-17)
// of a /proc/<pid>/stat line, in seconds.
func parseStatTree(line string) (ppid int, cpu float64, ok bool) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(line[i+1:])
	if len(f) < 15 {
		return 0, 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	for _, v := range f[11:15] {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, 0, false
		}
		cpu += n / clockTicks
	}
	return ppid, cpu, true
}
