module github.com/tiercache/tiercache/examples

go 1.25

require github.com/tiercache/tiercache v0.0.0

replace github.com/tiercache/tiercache => ../
