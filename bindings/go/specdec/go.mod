module github.com/specdec/specdec/bindings/go/specdec

go 1.23
