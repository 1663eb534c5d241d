//go:build !race

package wasm

// raceSlack is 0 without the race detector (see race_on.go).
const raceSlack = 0
