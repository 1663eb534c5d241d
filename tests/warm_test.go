package tests

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// warm, when set, sends every runJSON through a daemon whose warm pool
// serves the runs (TestWarmSuite sets it while it re-runs the suite).
var warm *warmDaemon

type warmDaemon struct {
	*daemon
	// zygote: the pool's runs are forked by the fork server.
	zygote bool
}

// fits reports whether a run should take a warm sandbox: Python with the
// pool's tmpfs size.
func (w *warmDaemon) fits(s runSpec) bool {
	if !strings.HasSuffix(s.name, ".py") {
		return false
	}
	for _, f := range s.flags {
		if strings.HasPrefix(f, "--tmpfs") || strings.HasPrefix(f, "--runtime") {
			return false
		}
	}
	return true
}

// waitReady waits until the pool has a sandbox ready, so a run never
// misses it for being quicker than the refill.
func (w *warmDaemon) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if n := w.poolReady(); n > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the warm pool never had a sandbox ready")
}

func (w *warmDaemon) poolReady() int {
	resp, err := http.Get(w.url + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `sandboxd_pool_ready{runtime="python"} `); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// TestWarmSuite runs the attack, limit and run tests again with every
// Python run served by a warm sandbox: a warm run must be confined and
// limited exactly as a cold one.
func TestWarmSuite(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{args: []string{"--warm", "python=2"}})
	warm = &warmDaemon{daemon: d}
	defer func() { warm = nil }()
	runWarmSuite(t)
}

// TestZygoteSuite is TestWarmSuite with the warm pool's runs forked by
// the fork server (--warm-zygote) into their sandboxes: a run that enters
// its sandbox from outside must be confined and limited exactly as one
// that init started.
func TestZygoteSuite(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{args: []string{"--warm", "python=2", "--warm-zygote"}})
	warm = &warmDaemon{daemon: d, zygote: true}
	defer func() { warm = nil }()
	runWarmSuite(t)
}

func runWarmSuite(t *testing.T) {
	suite := []struct {
		name string
		f    func(*testing.T)
	}{
		{"AttackHostFilesHidden", TestAttackHostFilesHidden},
		{"AttackEtcIsAllowlisted", TestAttackEtcIsAllowlisted},
		{"AttackHostProcessesInvisible", TestAttackHostProcessesInvisible},
		{"AttackNoInheritedFds", TestAttackNoInheritedFds},
		{"AttackCgroupNamespace", TestAttackCgroupNamespace},
		{"AttackNetworkHostListener", TestAttackNetworkHostListener},
		{"AttackNetworkInterfaces", TestAttackNetworkInterfaces},
		{"AttackWriteOutsideWorkspace", TestAttackWriteOutsideWorkspace},
		{"AttackCredentials", TestAttackCredentials},
		{"AttackHostname", TestAttackHostname},
		{"AttackSocketFamilies", TestAttackSocketFamilies},
		{"AttackSyscalls", TestAttackSyscalls},
		{"AttackPlantedSymlinksNotCollected", TestAttackPlantedSymlinksNotCollected},
		{"AttackHostFactsHidden", TestAttackHostFactsHidden},
		{"AttackQuotas", TestAttackQuotas},
		{"AttackSetuidBinaries", TestAttackSetuidBinaries},
		{"AttackForeignArchSyscall", TestAttackForeignArchSyscall},
		{"AttackHostSharedPlaces", TestAttackHostSharedPlaces},
		{"AttackRunsIsolatedFromEachOther", TestAttackRunsIsolatedFromEachOther},
		{"ForkBomb", TestForkBomb},
		{"DoubleForkDaemonDies", TestDoubleForkDaemonDies},
		{"GrandchildHoldingStdout", TestGrandchildHoldingStdout},
		{"TmpfsChargedToMemory", TestTmpfsChargedToMemory},
		{"OrphansAreReaped", TestOrphansAreReaped},
		{"CPUBandwidth", TestCPUBandwidth},
		{"MemoryLimit", TestMemoryLimit},
		{"WallTimeout", TestWallTimeout},
		{"CPUTimeLimit", TestCPUTimeLimit},
		{"CPUTimeLimitCountsAllProcesses", TestCPUTimeLimitCountsAllProcesses},
		{"SigtermIgnoringProcessDies", TestSigtermIgnoringProcessDies},
		{"OutputLimit", TestOutputLimit},
		{"FileSizeLimit", TestFileSizeLimit},
		{"OpenFilesLimit", TestOpenFilesLimit},
		{"RlimitsCannotBeRaised", TestRlimitsCannotBeRaised},
		{"HelloWorld", TestHelloWorld},
		{"ExitCodePropagates", TestExitCodePropagates},
		{"KilledBySignal", TestKilledBySignal},
		{"StdoutStderrApart", TestStdoutStderrApart},
		{"LargeOutputByteExact", TestLargeOutputByteExact},
		{"ProducedFiles", TestProducedFiles},
		{"ArgsReachProgramUnchanged", TestArgsReachProgramUnchanged},
		{"StdinPassthrough", TestStdinPassthrough},
		{"Environment", TestEnvironment},
		{"TrailingOutputArrives", TestTrailingOutputArrives},
	}
	for _, s := range suite {
		t.Run(s.name, s.f)
	}
}
