// Command pulumi-language-python is a Python language host for the Pulumi engine, written for this
// project because the module proxy reachable here does not serve the upstream language host module
// (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3). It implements the parts of the
// LanguageRuntime gRPC protocol that running Python programs, Python dynamic providers and Python
// policy packs need, and delegates the program start to the upstream executor script
// `pulumi-language-python-exec` (taken from the sdk/v3 module zip, installed next to this binary).
//
// Interpreter selection, in order:
//  1. Pulumi.yaml `runtime.options.virtualenv` (relative to the project root) -> <venv>/bin/python;
//  2. `runtime.options.toolchain: uv` -> <root>/.venv/bin/python;
//  3. $PULUMI_PYTHON_CMD;
//  4. python3, then python, on PATH.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// version is set at build time with -ldflags "-X main.version=<pulumi release>".
var version = "0.0.0-dev"

// exitCodeUserActionable is what pulumi-language-python-exec exits with after it has shown the user an
// actionable message; the engine must then not print its own generic failure ("bail").
const exitCodeUserActionable = 32

func main() {
	flags := flag.NewFlagSet("pulumi-language-python", flag.ContinueOnError)
	tracing := flags.String("tracing", "", "Zipkin-compatible tracing endpoint (passed to the program)")
	// Flags older engines passed; accepted and ignored so that they cannot break the start.
	_ = flags.String("root", "", "ignored")
	_ = flags.String("virtualenv", "", "ignored: read from the program info instead")
	_ = flags.String("toolchain", "", "ignored: read from the program info instead")
	_ = flags.String("typechecker", "", "ignored")
	_ = flags.Bool("logtostderr", false, "ignored")
	_ = flags.Int("v", 0, "ignored")
	if err := flags.Parse(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
		os.Exit(2)
	}
	engineAddress := ""
	if flags.NArg() > 0 {
		engineAddress = flags.Arg(flags.NArg() - 1)
	}

	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: cannot locate itself: %v\n", err)
		os.Exit(1)
	}
	execScript := filepath.Join(filepath.Dir(self), "pulumi-language-python-exec")
	if _, err := os.Stat(execScript); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: executor script missing next to the host: %v\n", err)
		os.Exit(1)
	}

	host := &languageHost{engineAddress: engineAddress, tracing: *tracing, execScript: execScript}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: could not start the gRPC server: %v\n", err)
		os.Exit(1)
	}
	// The engine reads the port from the first line of stdout.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: server stopped: %v\n", err)
		os.Exit(1)
	}
}

type languageHost struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	mu            sync.Mutex
	engineAddress string
	tracing       string
	execScript    string
}

func (h *languageHost) engine() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.engineAddress
}

// Handshake records the engine address (newer engines send it here rather than on the command line).
func (h *languageHost) Handshake(
	_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.GetEngineAddress() != "" {
		h.engineAddress = req.GetEngineAddress()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *languageHost) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

// pythonEnv is the interpreter to run and the environment to run it in.
type pythonEnv struct {
	python string
	env    []string
}

func optionString(opts *structpb.Struct, key string) string {
	if opts == nil {
		return ""
	}
	v, ok := opts.GetFields()[key]
	if !ok {
		return ""
	}
	return v.GetStringValue()
}

// resolvePython picks the interpreter for a program or plugin described by info.
func resolvePython(info *pulumirpc.ProgramInfo) (pythonEnv, error) {
	root := info.GetRootDirectory()
	if root == "" {
		root = info.GetProgramDirectory()
	}
	env := os.Environ()
	venv := optionString(info.GetOptions(), "virtualenv")
	if venv == "" && optionString(info.GetOptions(), "toolchain") == "uv" {
		venv = ".venv"
	}
	if toolchain := optionString(info.GetOptions(), "toolchain"); toolchain == "poetry" {
		return pythonEnv{}, errors.New("runtime option toolchain=poetry is not supported by this language host; " +
			"use `virtualenv: <dir>` in Pulumi.yaml or set PULUMI_PYTHON_CMD")
	}
	if venv != "" {
		if !filepath.IsAbs(venv) {
			venv = filepath.Join(root, venv)
		}
		python := filepath.Join(venv, "bin", "python")
		if _, err := os.Stat(python); err != nil {
			return pythonEnv{}, fmt.Errorf("the virtualenv %q from Pulumi.yaml has no bin/python "+
				"(create it: python3 -m venv %s && %s -m pip install -r requirements.txt)", venv, venv, python)
		}
		env = withEnv(env, "VIRTUAL_ENV", venv)
		env = withEnv(env, "PATH", filepath.Join(venv, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
		env = withoutEnv(env, "PYTHONHOME")
		// The dynamic-provider script pulumi-resource-pulumi-python reads this to find the same venv.
		env = withEnv(env, "PULUMI_RUNTIME_VIRTUALENV", venv)
		return pythonEnv{python: python, env: env}, nil
	}
	if cmd := os.Getenv("PULUMI_PYTHON_CMD"); cmd != "" {
		path, err := exec.LookPath(cmd)
		if err != nil {
			return pythonEnv{}, fmt.Errorf("PULUMI_PYTHON_CMD=%q: %w", cmd, err)
		}
		return pythonEnv{python: path, env: env}, nil
	}
	for _, name := range []string{"python3", "python"} {
		if path, err := exec.LookPath(name); err == nil {
			return pythonEnv{python: path, env: env}, nil
		}
	}
	return pythonEnv{}, errors.New("no Python interpreter found: set PULUMI_PYTHON_CMD, " +
		"or `runtime.options.virtualenv` in Pulumi.yaml, or put python3 on PATH")
}

func withoutEnv(env []string, key string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func withEnv(env []string, key, value string) []string {
	return append(withoutEnv(env, key), key+"="+value)
}

// Run executes the program with pulumi-language-python-exec and reports its failure, if any.
func (h *languageHost) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info := req.GetInfo()
	if info == nil {
		info = &pulumirpc.ProgramInfo{RootDirectory: req.GetPwd(), ProgramDirectory: req.GetPwd()}
	}
	py, err := resolvePython(info)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}

	program := req.GetProgram()
	if info.GetProgramDirectory() != "" {
		entry := info.GetEntryPoint()
		if entry == "" {
			entry = "."
		}
		program = filepath.Join(info.GetProgramDirectory(), entry)
	}
	if program == "" {
		program = "."
	}

	args := []string{"-u", h.execScript}
	add := func(k, v string) {
		if v != "" {
			args = append(args, "--"+k, v)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", h.engine())
	add("project", req.GetProject())
	add("root_directory", info.GetRootDirectory())
	add("stack", req.GetStack())
	add("pwd", req.GetPwd())
	add("dry_run", fmt.Sprintf("%v", req.GetDryRun()))
	add("parallel", fmt.Sprint(req.GetParallel()))
	add("tracing", h.tracing)
	add("organization", req.GetOrganization())
	args = append(args, program)
	args = append(args, req.GetArgs()...)

	env := py.env
	configMap := req.GetConfig()
	if configMap == nil {
		configMap = map[string]string{}
	}
	config, err := json.Marshal(configMap)
	if err != nil {
		return nil, fmt.Errorf("serializing config: %w", err)
	}
	env = withEnv(env, "PULUMI_CONFIG", string(config))
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	keys, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, fmt.Errorf("serializing config secret keys: %w", err)
	}
	env = withEnv(env, "PULUMI_CONFIG_SECRET_KEYS", string(keys))
	env = withEnv(env, "PULUMI_PROJECT", req.GetProject())

	cmd := exec.CommandContext(ctx, py.python, args...)
	cmd.Dir = req.GetPwd()
	cmd.Env = env
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok {
				if ws.ExitStatus() == exitCodeUserActionable {
					return &pulumirpc.RunResponse{Bail: true}, nil
				}
				return &pulumirpc.RunResponse{
					Error: fmt.Sprintf("Program exited with non-zero exit code: %d", ws.ExitStatus()),
				}, nil
			}
			return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited unexpectedly: %v", exitErr)}, nil
		}
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("Problem executing program (could not run %s): %v", py.python, err),
		}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

// listPackagesScript prints, as JSON, the Pulumi resource packages installed in the interpreter's
// environment: every distribution that ships a pulumi-plugin.json (written by the provider SDKs).
const listPackagesScript = `
import importlib.metadata as md, json, sys
out = []
for dist in md.distributions():
    for f in dist.files or []:
        if f.name != "pulumi-plugin.json":
            continue
        try:
            data = json.loads(f.read_text() or "{}")
        except Exception as e:
            print("cannot read %s: %s" % (f.locate(), e), file=sys.stderr)
            continue
        if not data.get("resource", False):
            continue
        name = data.get("name") or dist.metadata["Name"].removeprefix("pulumi_").removeprefix("pulumi-")
        out.append({"name": name, "version": data.get("version") or dist.version,
                    "server": data.get("server", "")})
print(json.dumps(out))
`

type pluginJSON struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Server  string `json:"server"`
}

func (h *languageHost) requiredPackages(ctx context.Context, info *pulumirpc.ProgramInfo,
) ([]*pulumirpc.PackageDependency, error) {
	py, err := resolvePython(info)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, py.python, "-c", listPackagesScript)
	cmd.Env = py.env
	cmd.Dir = info.GetProgramDirectory()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing installed Pulumi packages with %s: %w: %s", py.python, err, stderr.String())
	}
	var found []pluginJSON
	if err := json.Unmarshal(out, &found); err != nil {
		return nil, fmt.Errorf("parsing installed Pulumi packages: %w", err)
	}
	seen := map[string]bool{}
	deps := make([]*pulumirpc.PackageDependency, 0, len(found))
	for _, p := range found {
		key := p.Name + "@" + p.Version
		if seen[key] {
			continue
		}
		seen[key] = true
		deps = append(deps, &pulumirpc.PackageDependency{
			Kind: "resource", Name: p.Name, Version: p.Version, Server: p.Server,
		})
	}
	return deps, nil
}

// GetRequiredPackages returns the provider packages installed in the program's Python environment, so
// that the engine can check (or install) their plugins before the program runs.
func (h *languageHost) GetRequiredPackages(ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	deps, err := h.requiredPackages(ctx, req.GetInfo())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &pulumirpc.GetRequiredPackagesResponse{Packages: deps}, nil
}

// GetRequiredPlugins is the deprecated form of GetRequiredPackages, kept for older callers.
func (h *languageHost) GetRequiredPlugins(ctx context.Context, req *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	deps, err := h.requiredPackages(ctx, req.GetInfo())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	plugins := make([]*pulumirpc.PluginDependency, 0, len(deps))
	for _, d := range deps {
		plugins = append(plugins, &pulumirpc.PluginDependency{
			Name: d.GetName(), Kind: d.GetKind(), Version: d.GetVersion(), Server: d.GetServer(),
		})
	}
	return &pulumirpc.GetRequiredPluginsResponse{Plugins: plugins}, nil
}

// About reports the interpreter and its version.
func (h *languageHost) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	py, err := resolvePython(req.GetInfo())
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	cmd := exec.CommandContext(ctx, py.python, "-c", "import platform; print(platform.python_version())")
	cmd.Env = py.env
	out, err := cmd.Output()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "running %s: %v", py.python, err)
	}
	return &pulumirpc.AboutResponse{
		Executable: py.python,
		Version:    strings.TrimSpace(string(out)),
		Metadata:   map[string]string{"languageHost": "postgres-apps localenv " + version},
	}, nil
}

// GetProgramDependencies lists the distributions installed in the program's environment.
func (h *languageHost) GetProgramDependencies(ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	py, err := resolvePython(req.GetInfo())
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	cmd := exec.CommandContext(ctx, py.python, "-c",
		"import importlib.metadata as md, json; "+
			"print(json.dumps(sorted({d.metadata['Name']: d.version for d in md.distributions()}.items())))")
	cmd.Env = py.env
	out, err := cmd.Output()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "listing dependencies with %s: %v", py.python, err)
	}
	var pairs [][2]string
	if err := json.Unmarshal(out, &pairs); err != nil {
		return nil, status.Errorf(codes.Internal, "parsing dependencies: %v", err)
	}
	deps := make([]*pulumirpc.DependencyInfo, 0, len(pairs))
	for _, p := range pairs {
		deps = append(deps, &pulumirpc.DependencyInfo{Name: p[0], Version: p[1]})
	}
	return &pulumirpc.GetProgramDependenciesResponse{Dependencies: deps}, nil
}

// InstallDependencies creates the configured virtualenv if it is missing and pip-installs
// requirements.txt into it (what `pulumi install` does for a Python project).
func (h *languageHost) InstallDependencies(req *pulumirpc.InstallDependenciesRequest,
	stream grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	info := req.GetInfo()
	if info == nil {
		info = &pulumirpc.ProgramInfo{RootDirectory: req.GetDirectory(), ProgramDirectory: req.GetDirectory()}
	}
	root := info.GetRootDirectory()
	if root == "" {
		root = req.GetDirectory()
	}
	send := func(stdout, stderr []byte) error {
		return stream.Send(&pulumirpc.InstallDependenciesResponse{Stdout: stdout, Stderr: stderr})
	}
	venv := optionString(info.GetOptions(), "virtualenv")
	if venv != "" {
		if !filepath.IsAbs(venv) {
			venv = filepath.Join(root, venv)
		}
		if _, err := os.Stat(filepath.Join(venv, "bin", "python")); err != nil {
			base := "python3"
			if cmd := os.Getenv("PULUMI_PYTHON_CMD"); cmd != "" {
				base = cmd
			}
			if err := runStreaming(stream.Context(), root, nil, send, base, "-m", "venv", venv); err != nil {
				return err
			}
		}
	}
	py, err := resolvePython(info)
	if err != nil {
		return err
	}
	reqs := filepath.Join(root, "requirements.txt")
	if _, err := os.Stat(reqs); err != nil {
		return send([]byte("no requirements.txt in "+root+": nothing to install\n"), nil)
	}
	return runStreaming(stream.Context(), root, py.env, send, py.python, "-m", "pip", "install", "-r", reqs)
}

func runStreaming(ctx context.Context, dir string, env []string, send func(stdout, stderr []byte) error,
	name string, args ...string,
) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = env
	}
	var mu sync.Mutex
	cmd.Stdout = writerFunc(func(p []byte) error { mu.Lock(); defer mu.Unlock(); return send(p, nil) })
	cmd.Stderr = writerFunc(func(p []byte) error { mu.Lock(); defer mu.Unlock(); return send(nil, p) })
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

type writerFunc func(p []byte) error

func (f writerFunc) Write(p []byte) (int, error) {
	buf := make([]byte, len(p))
	copy(buf, p)
	if err := f(buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// RunPlugin runs a plugin written in Python: a policy pack (kind "analyzer", through the SDK's
// `python -m pulumi.policy <engine> <dir>`) or a Python provider/tool (its directory's __main__.py).
// Output and the exit code are streamed back to the engine.
func (h *languageHost) RunPlugin(req *pulumirpc.RunPluginRequest,
	stream grpc.ServerStreamingServer[pulumirpc.RunPluginResponse],
) error {
	info := req.GetInfo()
	if info == nil {
		return status.Error(codes.InvalidArgument, "RunPlugin needs the plugin's program info")
	}
	py, err := resolvePython(info)
	if err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	dir := info.GetProgramDirectory()
	var args []string
	if req.GetKind() == "analyzer" {
		args = append([]string{"-u", "-m", "pulumi.policy"}, req.GetArgs()...)
		args = append(args, dir)
	} else {
		entry := info.GetEntryPoint()
		if entry == "" {
			entry = "."
		}
		args = append([]string{"-u", filepath.Join(dir, entry)}, req.GetArgs()...)
	}
	env := py.env
	for _, kv := range req.GetEnv() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env = withEnv(env, k, v)
		}
	}

	cmd := exec.CommandContext(stream.Context(), py.python, args...)
	cmd.Dir = req.GetPwd()
	if cmd.Dir == "" {
		cmd.Dir = dir
	}
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return status.Errorf(codes.Internal, "starting %s: %v", py.python, err)
	}
	var mu sync.Mutex
	send := func(r *pulumirpc.RunPluginResponse) {
		mu.Lock()
		defer mu.Unlock()
		_ = stream.Send(r)
	}
	var wg sync.WaitGroup
	pump := func(r io.Reader, wrap func([]byte) *pulumirpc.RunPluginResponse) {
		defer wg.Done()
		br := bufio.NewReader(r)
		buf := make([]byte, 32*1024)
		for {
			n, err := br.Read(buf)
			if n > 0 {
				chunk := make([]byte, n)
				copy(chunk, buf[:n])
				send(wrap(chunk))
			}
			if err != nil {
				return
			}
		}
	}
	wg.Add(2)
	go pump(stdout, func(b []byte) *pulumirpc.RunPluginResponse {
		return &pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stdout{Stdout: b}}
	})
	go pump(stderr, func(b []byte) *pulumirpc.RunPluginResponse {
		return &pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stderr{Stderr: b}}
	})
	wg.Wait()
	code := int32(0)
	if err := cmd.Wait(); err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			return status.Errorf(codes.Internal, "waiting for %s: %v", py.python, err)
		}
		code = int32(exitErr.ExitCode())
	}
	send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: code}})
	return nil
}
