//go:build race

package core

// raceEnabled is true under the race detector. A bridge function's
// goroutine hands its outcome to the loop through C memory (the completion
// queue, a stream's ring), which the detector does not see: under it, each
// such hand-off is mirrored by an atomic on Go memory (Loop.raceRelease
// before it, Loop.raceAcquire after the loop took it), so what a function
// wrote before returning is seen to happen before what the run's caller
// reads once the run is over — as it does. Without the detector the two
// compile to nothing.
const raceEnabled = true
