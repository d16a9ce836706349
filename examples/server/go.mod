module github.com/specdec/specdec/examples/server

go 1.23

require github.com/specdec/specdec/bindings/go/specdec v0.0.0

replace github.com/specdec/specdec/bindings/go/specdec => ../../bindings/go/specdec
