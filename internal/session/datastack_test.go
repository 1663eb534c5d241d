package session

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// TestDataStack: Debian's numpy and pandas work inside a session, and a
// DataFrame's trailing value comes back as HTML too.
func TestDataStack(t *testing.T) {
	for _, p := range []string{"numpy", "pandas"} {
		if _, err := os.Stat("/usr/lib/python3/dist-packages/" + p); err != nil {
			testenv.MissingFile(t, "/usr/lib/python3/dist-packages/"+p)
		}
	}
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{Limits: limits.Limits{Memory: 512 * limits.MiB, Timeout: limits.Duration(60 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	exec(t, s, "open('d.csv', 'w').write('a,b\\n1,2\\n3,4\\n')")
	res := exec(t, s, "import numpy as np, pandas as pd\ndf = pd.read_csv('d.csv')\ndf['c'] = np.sqrt(df.a * df.b)\ndf")
	if res.Status != run.StatusOK || !strings.Contains(res.Result["text/html"], "<table") || !strings.Contains(res.Result["text/plain"], "3.464") {
		t.Fatalf("status %s result %v error %+v stderr %s", res.Status, res.Result, res.Error, res.Stderr)
	}
	t.Logf("numpy+pandas cell: %v", res.WallTime)
}
