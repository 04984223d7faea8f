// pulumi-language-yaml: upstream's YAML language host (github.com/pulumi/pulumi-yaml v1.25.0,
// pkg/server), started the way its cmd/pulumi-language-yaml starts it, plus one RPC it lacks.
//
// v1.25.0 is the newest release the module proxy serves, and it predates the `Link` RPC: the CLI
// 3.274.1 calls Link at the end of `pulumi package add` and fails with "linking package: method
// Link not implemented" (the package never reaches Pulumi.yaml). A YAML program has nothing to link
// (no SDK: types are read from the provider's schema at run time), so Link answers "done", with no
// instructions. Every other RPC is upstream's, unchanged, with one setting: schemas are loaded
// through the engine (useRPCLoader, the run's LoaderTarget) instead of the host starting each
// provider a second time itself; started from here, the Python language host is found on PATH
// rather than next to `pulumi`, and the CLI warned "using pulumi-language-python from $PATH".
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/pulumi/pulumi-yaml/pkg/server"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
)

// host is upstream's language host with a no-op Link.
type host struct {
	pulumirpc.LanguageRuntimeServer
}

func (host) Link(context.Context, *pulumirpc.LinkRequest) (*pulumirpc.LinkResponse, error) {
	return &pulumirpc.LinkResponse{}, nil
}

func main() {
	tracing := flag.String("tracing", "", "emit tracing to a Zipkin-compatible endpoint")
	flag.String("root", "", "root of the program execution (unused, as upstream)")
	flag.String("compiler", "", "obsolete (accepted, as upstream)")
	flag.Parse()
	logging.InitLogging(false, 0, false)
	cmdutil.InitTracing("pulumi-language-yaml", "pulumi-language-yaml", *tracing)

	// The engine's address is the first argument; the host stops when the engine goes away or on
	// SIGINT.
	var engine string
	var cancel chan bool
	if args := flag.Args(); len(args) > 0 {
		engine = args[0]
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		cancel = make(chan bool)
		go func() {
			<-ctx.Done()
			stop()
			close(cancel)
		}()
		if err := rpcutil.Healthcheck(ctx, engine, 5*time.Minute, stop); err != nil {
			cmdutil.Exit(fmt.Errorf("could not start the health check of the engine: %w", err))
		}
	}

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: cancel,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv,
				host{server.NewLanguageHost(engine, *tracing, true /* useRPCLoader */)})
			return nil
		},
	})
	if err != nil {
		cmdutil.Exit(fmt.Errorf("could not start the language host RPC server: %w", err))
	}
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		cmdutil.Exit(fmt.Errorf("language host RPC stopped serving: %w", err))
	}
}
