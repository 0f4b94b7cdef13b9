package main

import "time"

// Results is everything one run measured; it is written as JSON next to
// docs/BENCHMARKS.md and the document is rendered from it.
type Results struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Mode     string    `json:"mode"` // quick or full
	Machine  Machine   `json:"machine"`
	Settings Settings  `json:"settings"`
	Commands []string  `json:"commands"`

	Paths        []PathResult     `json:"paths,omitempty"`
	ControlPlane *ControlPlane    `json:"controlPlane,omitempty"`
	Lab          *LabResult       `json:"lab,omitempty"`
	Sandbox      *SandboxResult   `json:"sandbox,omitempty"`
	Telemetry    *TelemetryResult `json:"telemetry,omitempty"`
	Console      *ConsoleResult   `json:"console,omitempty"`
	Kind         *KindResult      `json:"kind,omitempty"`
	GoBench      []GoBenchmark    `json:"goBench,omitempty"`
	GoBenchRaw   string           `json:"goBenchRaw,omitempty"` // file name of the benchstat-comparable text
	Profiles     []string         `json:"profiles,omitempty"`
	Errors       []SectionError   `json:"errors,omitempty"`
}

// SectionError is a section that could not run, and why.
type SectionError struct {
	Section string `json:"section"`
	Error   string `json:"error"`
}

// Machine is where the figures come from, and how busy it was.
type Machine struct {
	CPU       string     `json:"cpu"`
	Cores     int        `json:"cores"`
	Kernel    string     `json:"kernel"`
	Go        string     `json:"go"`
	Fortio    string     `json:"fortio"`
	Nginx     string     `json:"nginx,omitempty"`
	HAProxy   string     `json:"haproxy,omitempty"`
	LoadStart [3]float64 `json:"loadAvgStart"`
	LoadEnd   [3]float64 `json:"loadAvgEnd"`
	LoadMax   float64    `json:"loadAvgMax"` // highest 1-minute load seen between sections
	Loaded    bool       `json:"loaded"`     // other work used over a tenth of a core in some section
	// CPU time of processes other than the benchmark's, over the run, and
	// its highest share of one core over a section.
	OtherCPUSeconds  float64  `json:"otherCPUSeconds"`
	OtherCPUShareMax float64  `json:"otherCPUShareMax"`
	OtherProcs       []string `json:"otherBusyProcesses,omitempty"`
	ExternalNote     string   `json:"note,omitempty"`
}

// Settings are the load parameters of the run.
type Settings struct {
	QPS         float64       `json:"qps"`
	Connections int           `json:"connections"`
	PayloadSize int           `json:"payloadBytes"`
	Requests    int           `json:"requestsPerPath"`
	Chunks      int           `json:"chunks"`
	Warmup      int           `json:"warmupRequests"`
	MaxDuration time.Duration `json:"maxThroughputDuration"`
	LabRounds   int           `json:"labRounds"`
	CPRounds    int           `json:"controlPlaneRounds"`
}

// PathResult is one request path's figures.
type PathResult struct {
	Name    string `json:"name"`
	Title   string `json:"title"`
	Pending string `json:"pending,omitempty"` // why it was not measured

	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"` // non-200 answers and transport errors
	QPS      float64 `json:"achievedQPS"`
	P50      float64 `json:"p50ms"`
	P90      float64 `json:"p90ms"`
	P99      float64 `json:"p99ms"`
	P999     float64 `json:"p999ms"`
	// Added latency over the direct path, per percentile, in ms.
	AddedP50 float64 `json:"addedP50ms"`
	AddedP90 float64 `json:"addedP90ms"`
	AddedP99 float64 `json:"addedP99ms"`

	Proxies []ProxyResult `json:"proxies,omitempty"`
	Max     *MaxResult    `json:"maxThroughput,omitempty"`
}

// ProxyResult is one proxy process on a path.
type ProxyResult struct {
	Name      string  `json:"name"`
	PID       int     `json:"pid"`
	CPUPer1k  float64 `json:"cpuSecondsPer1kRequests"` // = vCPU at 1,000 rps
	IdleRSSMB float64 `json:"idleRSSMB"`
	PeakRSSMB float64 `json:"peakRSSMB"` // VmHWM after the fixed-rate runs
	// Pss counts each page shared with other processes (the one binary's
	// pages, mapped by every sidecar and the control plane) divided by
	// how many map it: the proxy's fair share of the machine's memory.
	IdlePssMB   float64 `json:"idlePssMB,omitempty"`
	IdleAnonMB  float64 `json:"idleAnonMB,omitempty"`  // RssAnon: private memory (heap, stacks)
	LoadedPssMB float64 `json:"loadedPssMB,omitempty"` // Pss right after the fixed-rate runs
}

// MaxResult is the open-throttle run with the path's proxies pinned to one core.
type MaxResult struct {
	QPS      float64            `json:"qps"`
	Requests int64              `json:"requests"`
	Errors   int64              `json:"errors"`
	P50      float64            `json:"p50ms"`
	P99      float64            `json:"p99ms"`
	PerCore  map[string]float64 `json:"requestsPerProxyCPUSecond,omitempty"`
	CPUCore  int                `json:"proxyCore"`
}

// ControlPlane holds the control-plane figures.
type ControlPlane struct {
	Push  []PushResult `json:"applyToAck"`
	Scale *ScaleResult `json:"scale,omitempty"`
}

// PushResult is apply → last ACK with N simulated proxies.
type PushResult struct {
	Proxies  int       `json:"proxies"`
	Rounds   int       `json:"rounds"`
	P50ms    float64   `json:"p50ms"`
	P99ms    float64   `json:"p99ms"`
	Samples  []float64 `json:"samplesMs"`
	RSSMB    float64   `json:"rssMB"`
	ConnectS float64   `json:"connectAllSeconds"` // all N connected and ACKed
}

// ScaleResult is the big-mesh translation.
type ScaleResult struct {
	Services     int       `json:"services"`
	Endpoints    int       `json:"endpoints"`
	FillSeconds  float64   `json:"fillSeconds"`
	BuildP50ms   float64   `json:"buildP50ms"` // xds.Build for one sidecar
	BuildP99ms   float64   `json:"buildP99ms"`
	PushP50ms    float64   `json:"applyToAckP50ms"` // apply → ACK, one proxy
	PushP99ms    float64   `json:"applyToAckP99ms"`
	Samples      []float64 `json:"applyToAckSamplesMs"`
	RSSMB        float64   `json:"rssMB"`
	PeakRSSMB    float64   `json:"peakRSSMB"`
	HeapInuseMB  float64   `json:"heapInuseMB"`
	Resources    int       `json:"resourcesPerProxy"`
	Rounds       int       `json:"rounds"`
	ClientsShare string    `json:"note,omitempty"`
}

// LabResult is `up` to ready and `down` to clean.
type LabResult struct {
	Rounds   int       `json:"rounds"`
	UpS      []float64 `json:"upSeconds"`
	DownS    []float64 `json:"downSeconds"`
	UpP50    float64   `json:"upP50s"`
	UpMax    float64   `json:"upMaxs"`
	DownP50  float64   `json:"downP50s"`
	DownMax  float64   `json:"downMaxs"`
	Reported []float64 `json:"upReportedSeconds"` // what `up` itself printed
}

// GoBenchmark is one line of `go test -bench` output.
type GoBenchmark struct {
	Package     string  `json:"package"`
	Name        string  `json:"name"`
	Iterations  int64   `json:"iterations"`
	NsPerOp     float64 `json:"nsPerOp"`
	BytesPerOp  float64 `json:"bytesPerOp"`
	AllocsPerOp float64 `json:"allocsPerOp"`
	// Metrics are the benchmark's own figures (b.ReportMetric), by unit.
	Metrics map[string]float64 `json:"metrics,omitempty"`
}
