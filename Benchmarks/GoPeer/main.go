// The Go peer of the `suspended` section of fiberstacks bench: -jobs goroutines, each blocked on one
// shared channel, on GOMAXPROCS=2 (our scheduler's 2 workers). It measures what ours measures, the same
// way, and prints one JSON object on standard output, these figures and go_version:
//
//	suspend_s            from the first `go` statement until every goroutine has started and is blocking
//	resume_s             from closing the channel until every goroutine has finished
//	rss_per_fiber_bytes  VmRSS growth with all of them blocked, over -jobs
//	page_table_bytes     VmPTE growth with all of them blocked
//	shutdown_s           runtime.GC() and debug.FreeOSMemory() after they are done: every stack given back
//	rss_after_ratio      VmRSS after they are done, runtime.GC() and debug.FreeOSMemory(), over VmRSS at start
//	anon_after_bytes     the RssAnon part of what stayed: RssAnon growth from start to then
//
// As ours, it runs a warm-up of the same shape with 1,000 goroutines first, so the start already holds
// what any run pages in once.
//
// Every wait is bounded by -time-limit; an error goes to standard error with exit status 1.
// Standard library only: it builds offline (GOPROXY=off).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// maxJobs bounds -jobs: ten million blocked goroutines take about 30 GB.
const maxJobs = 10_000_000

func main() {
	jobs := flag.Int("jobs", 1_000_000, fmt.Sprintf("goroutines blocked at once, 1 to %d", maxJobs))
	limit := flag.Duration("time-limit", 120*time.Second, "longest wait for the goroutines to block, then to finish (1s to 1h)")
	flag.Parse()
	if *jobs < 1 || *jobs > maxJobs {
		fail(fmt.Errorf("-jobs %d is out of range: 1 to %d", *jobs, maxJobs))
	}
	if *limit < time.Second || *limit > time.Hour {
		fail(fmt.Errorf("-time-limit %v is out of range: 1s to 1h", *limit))
	}
	runtime.GOMAXPROCS(2)
	warmUp := *jobs
	if warmUp > 1_000 {
		warmUp = 1_000
	}
	if _, err := measure(warmUp, *limit); err != nil {
		fail(err)
	}
	figures, err := measure(*jobs, *limit)
	if err != nil {
		fail(err)
	}
	report := map[string]any{"go_version": runtime.Version()}
	for name, value := range figures {
		report[name] = value
	}
	if err := json.NewEncoder(os.Stdout).Encode(report); err != nil {
		fail(err)
	}
}

// measure blocks jobs goroutines on one channel, then releases them; see the file comment.
func measure(jobs int, limit time.Duration) (map[string]float64, error) {
	before, err := status()
	if err != nil {
		return nil, err
	}
	gate := make(chan struct{})
	var started, finished int64
	start := time.Now()
	for i := 0; i < jobs; i++ {
		go func() {
			atomic.AddInt64(&started, 1)
			<-gate
			atomic.AddInt64(&finished, 1)
		}()
	}
	if err := waitUntil(&started, jobs, "blocked", limit); err != nil {
		return nil, err
	}
	suspended := time.Since(start)
	live, err := status()
	if err != nil {
		return nil, err
	}
	release := time.Now()
	close(gate)
	if err := waitUntil(&finished, jobs, "finished", limit); err != nil {
		return nil, err
	}
	resumed := time.Since(release)
	shutdownStart := time.Now()
	runtime.GC()
	debug.FreeOSMemory()
	shutdown := time.Since(shutdownStart)
	after, err := status()
	if err != nil {
		return nil, err
	}
	return map[string]float64{
		"jobs":                float64(jobs),
		"suspend_s":           suspended.Seconds(),
		"resume_s":            resumed.Seconds(),
		"rss_per_fiber_bytes": float64(live.rss-before.rss) / float64(jobs),
		"page_table_bytes":    float64(live.pageTables - before.pageTables),
		"shutdown_s":          shutdown.Seconds(),
		"rss_after_ratio":     float64(after.rss) / float64(before.rss),
		"anon_after_bytes":    float64(after.anonymous - before.anonymous),
	}, nil
}

// waitUntil polls counter every millisecond, as the Swift side polls its own, until it reaches jobs or limit passes.
func waitUntil(counter *int64, jobs int, what string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for atomic.LoadInt64(counter) < int64(jobs) {
		if time.Now().After(deadline) {
			return fmt.Errorf("not all %d goroutines %s within %v (%d were)", jobs, what, limit, atomic.LoadInt64(counter))
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// memory is what /proc/self/status says of this process's memory, in bytes.
type memory struct {
	rss, anonymous, pageTables int64
}

// status reads VmRSS, RssAnon and VmPTE from /proc/self/status.
func status() (memory, error) {
	text, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return memory{}, err
	}
	var result memory
	values := map[string]*int64{"VmRSS": &result.rss, "RssAnon": &result.anonymous, "VmPTE": &result.pageTables}
	for _, line := range strings.Split(string(text), "\n") {
		name, value, _ := strings.Cut(line, ":")
		target := values[name]
		if target == nil {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) != 2 || fields[1] != "kB" {
			return memory{}, fmt.Errorf("/proc/self/status: unexpected line %q", line)
		}
		kib, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return memory{}, fmt.Errorf("/proc/self/status: %q: %v", line, err)
		}
		*target = kib << 10
		delete(values, name)
	}
	for name := range values {
		return memory{}, fmt.Errorf("/proc/self/status has no %s line", name)
	}
	return result, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gopeer:", err)
	os.Exit(1)
}
