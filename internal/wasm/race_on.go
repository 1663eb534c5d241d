//go:build race

package wasm

// raceSlack is the race detector's share of a worker's memory: its shadow
// of the Go heap and its own structures grow the host's side of an
// instance several times over, which a -race build's workers must be
// allowed beyond workerSlack.
const raceSlack = 224 << 20
