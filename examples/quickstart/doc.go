// Package quickstart is the README's quickstart, as a runnable example: a
// tiercache.Cache with otter in the process as L1 and Redis as L2.
package quickstart
