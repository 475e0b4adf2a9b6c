module github.com/moonbridge/moonbridge

go 1.26
