// Command etcd runs etcd's own server entry point. etcd's modules carry
// replace directives, so `go install` refuses them; a consumer module works.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
