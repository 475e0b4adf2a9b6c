//go:build !race

package core

// raceEnabled: see race.go.
const raceEnabled = false
