// Command pulumi-resource-postgresql is a local stand-in for the `postgresql` provider plugin: the module
// proxy reachable here refuses github.com/pulumi/pulumi-postgresql/provider/v3 and the Terraform
// provider it bridges (github.com/cyrilgdn/terraform-provider-postgresql), so this project builds its
// own plugin under the name and version of the PyPI SDK pulumi-postgresql it pins. It speaks the same
// schema (tokens, property names, defaults) for the resources this project uses: Role, Database,
// Grant, GrantRole, Extension, Schema and DefaultPrivileges, with the upstream SQL semantics
// (see docs/toolchain.md for what differs). Other resources fail with a clear message.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pbempty "google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// version is set at build time: -ldflags "-X main.version=<version of the PyPI SDK>".
var version = "0.0.0-dev"

func main() {
	if err := provider.Main("postgresql", func(*provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return &pgProvider{pools: map[string]*pgxpool.Pool{}}, nil
	}); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-postgresql: %v\n", err)
		os.Exit(1)
	}
}

// kind is one resource type: its defaults, which input changes replace it, and its SQL.
type kind interface {
	// defaults fills in upstream defaults and returns validation failures.
	check(in props) []*pulumirpc.CheckFailure
	// replaceKeys are the inputs whose change replaces the resource.
	replaceKeys() map[string]bool
	// computed are output-only or server-derived keys, unknown during a preview of a create.
	computed() []string
	create(ctx context.Context, p *pgProvider, in props) (string, resource.PropertyMap, error)
	// read returns nil outputs when the object is gone.
	read(ctx context.Context, p *pgProvider, id string, state props) (resource.PropertyMap, error)
	update(ctx context.Context, p *pgProvider, id string, olds, news props) (resource.PropertyMap, error)
	del(ctx context.Context, p *pgProvider, id string, state props) error
}

var kinds = map[string]kind{
	"postgresql:index/role:Role":                           roleKind{},
	"postgresql:index/database:Database":                   databaseKind{},
	"postgresql:index/grant:Grant":                         grantKind{},
	"postgresql:index/grantRole:GrantRole":                 grantRoleKind{},
	"postgresql:index/extension:Extension":                 extensionKind{},
	"postgresql:index/schema:Schema":                       schemaKind{},
	"postgresql:index/defaultPrivileges:DefaultPrivileges": defaultPrivilegesKind{},
}

// importable: the resources `pulumi import` can adopt, as upstream (cyrilgdn/terraform-provider-postgresql
// postgresql/resource_postgresql_role.go resourcePostgreSQLRole and resource_postgresql_database.go
// resourcePostgreSQLDatabase declare `Importer: schema.ImportStatePassthrough…`: the import ID is the
// object's name, and Read fills the state from the server alone, as on a refresh with no prior state).
// A role's password reads back as the server's verifier (readRolePassword with no state password).
var importable = map[string]bool{
	"postgresql:index/role:Role":         true,
	"postgresql:index/database:Database": true,
}

func kindOf(urn string) (kind, error) {
	t := string(resource.URN(urn).Type())
	if k, ok := kinds[t]; ok {
		return k, nil
	}
	return nil, status.Errorf(codes.Unimplemented,
		"%s is not implemented by this locally built postgresql provider (Role, Database, Grant, GrantRole, "+
			"Extension, Schema and DefaultPrivileges are)", t)
}

type pgProvider struct {
	pulumirpc.UnimplementedResourceProviderServer

	mu     sync.Mutex
	cfg    connConfig
	pools  map[string]*pgxpool.Pool
	config bool
}

var marshalOpts = plugin.MarshalOptions{KeepUnknowns: true, SkipNulls: true}

func unmarshal(s *structpb.Struct) (resource.PropertyMap, error) {
	m, err := plugin.UnmarshalProperties(s, marshalOpts)
	if m == nil {
		m = resource.PropertyMap{}
	}
	return m, err
}

func marshal(m resource.PropertyMap) (*structpb.Struct, error) {
	return plugin.MarshalProperties(m, marshalOpts)
}

func (p *pgProvider) GetPluginInfo(context.Context, *pbempty.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (p *pgProvider) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	return &pulumirpc.GetSchemaResponse{Schema: fmt.Sprintf(`{"name":"postgresql","version":%q}`, version)}, nil
}

func (p *pgProvider) Cancel(context.Context, *pbempty.Empty) (*pbempty.Empty, error) {
	return &pbempty.Empty{}, nil
}

func (p *pgProvider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	var failures []*pulumirpc.CheckFailure
	for _, k := range []string{"awsRdsIamAuth", "azureIdentityAuth", "gcpIamImpersonateServiceAccount", "clientcert"} {
		if v, ok := news[resource.PropertyKey(k)]; ok && !v.IsNull() && cfgString(v) != "" && cfgString(v) != "false" {
			failures = append(failures, &pulumirpc.CheckFailure{
				Property: k, Reason: k + " is not supported by this locally built postgresql provider",
			})
		}
	}
	if s := cfgString(news["scheme"]); s != "" && s != "postgres" {
		failures = append(failures, &pulumirpc.CheckFailure{
			Property: "scheme", Reason: "only scheme=postgres is supported by this locally built postgresql provider",
		})
	}
	return &pulumirpc.CheckResponse{Inputs: req.GetNews(), Failures: failures}, nil
}

func (p *pgProvider) DiffConfig(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	olds, err := unmarshal(req.GetOldInputs())
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	var diffs []string
	for _, k := range unionKeys(olds, news) {
		if !olds[resource.PropertyKey(k)].DeepEquals(news[resource.PropertyKey(k)]) {
			diffs = append(diffs, k)
		}
	}
	if len(diffs) == 0 {
		return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
	}
	// Connection settings never replace the resources: they only say how to reach the server.
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_SOME, Diffs: diffs}, nil
}

func (p *pgProvider) Configure(_ context.Context, req *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	var args resource.PropertyMap
	if req.GetArgs() != nil {
		m, err := unmarshal(req.GetArgs())
		if err != nil {
			return nil, err
		}
		args = m
	} else {
		// Older engines send only a flat map of "postgresql:config:<key>" -> string.
		args = resource.PropertyMap{}
		for k, v := range req.GetVariables() {
			key := k[strings.LastIndex(k, ":")+1:]
			args[resource.PropertyKey(key)] = resource.NewStringProperty(v)
		}
	}
	cfg, err := parseConnConfig(args)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	p.mu.Lock()
	p.cfg = cfg
	p.config = true
	p.mu.Unlock()
	return &pulumirpc.ConfigureResponse{SupportsPreview: true}, nil
}

func (p *pgProvider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	k, err := kindOf(req.GetUrn())
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	failures := k.check(props(news))
	out, err := marshal(news)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CheckResponse{Inputs: out, Failures: failures}, nil
}

func unionKeys(a, b resource.PropertyMap) []string {
	seen := map[string]bool{}
	for k := range a {
		seen[string(k)] = true
	}
	for k := range b {
		seen[string(k)] = true
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (p *pgProvider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	k, err := kindOf(req.GetUrn())
	if err != nil {
		return nil, err
	}
	olds, err := unmarshal(req.GetOldInputs())
	if err != nil {
		return nil, err
	}
	if len(olds) == 0 {
		if olds, err = unmarshal(req.GetOlds()); err != nil {
			return nil, err
		}
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	var diffs, replaces []string
	detailed := map[string]*pulumirpc.PropertyDiff{}
	computed := map[string]bool{}
	for _, c := range k.computed() {
		computed[c] = true
	}
	for _, key := range unionKeys(olds, news) {
		o, n := olds[resource.PropertyKey(key)], news[resource.PropertyKey(key)]
		if !n.IsComputed() && o.DeepEquals(n) {
			continue
		}
		// An Optional+Computed attribute the program does not set keeps its state value, as
		// Terraform plans it (terraform-plugin-sdk helper/schema: a Computed attribute absent
		// from the config is not a change). Only an import puts such a value into the inputs.
		if computed[key] && n.IsNull() {
			continue
		}
		diffs = append(diffs, key)
		pd := &pulumirpc.PropertyDiff{Kind: pulumirpc.PropertyDiff_UPDATE, InputDiff: true}
		if k.replaceKeys()[key] {
			replaces = append(replaces, key)
			pd.Kind = pulumirpc.PropertyDiff_UPDATE_REPLACE
		}
		detailed[key] = pd
	}
	if len(diffs) == 0 {
		return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
	}
	dbr, _ := k.(interface{ deleteBeforeReplace() bool })
	return &pulumirpc.DiffResponse{
		Changes: pulumirpc.DiffResponse_DIFF_SOME, Diffs: diffs, Replaces: replaces,
		DetailedDiff: detailed, HasDetailedDiff: true,
		DeleteBeforeReplace: len(replaces) > 0 && dbr != nil && dbr.deleteBeforeReplace(),
	}, nil
}

func (p *pgProvider) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	k, err := kindOf(req.GetUrn())
	if err != nil {
		return nil, err
	}
	in, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	if req.GetPreview() {
		outs := in.Copy()
		for _, c := range k.computed() {
			if _, ok := outs[resource.PropertyKey(c)]; !ok {
				outs[resource.PropertyKey(c)] = resource.MakeComputed(resource.NewStringProperty(""))
			}
		}
		s, err := marshal(outs)
		if err != nil {
			return nil, err
		}
		return &pulumirpc.CreateResponse{Properties: s}, nil
	}
	id, outs, err := k.create(ctx, p, props(in))
	if err != nil {
		return nil, err
	}
	s, err := marshal(outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: s}, nil
}

func (p *pgProvider) Read(ctx context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	k, err := kindOf(req.GetUrn())
	if err != nil {
		return nil, err
	}
	state, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	if len(state) == 0 && !importable[string(resource.URN(req.GetUrn()).Type())] {
		return nil, status.Errorf(codes.Unimplemented,
			"importing %s is not supported: upstream declares no Importer for it", resource.URN(req.GetUrn()).Type())
	}
	outs, err := k.read(ctx, p, req.GetId(), props(state))
	if err != nil {
		return nil, err
	}
	if outs == nil {
		return &pulumirpc.ReadResponse{}, nil // gone
	}
	s, err := marshal(outs)
	if err != nil {
		return nil, err
	}
	inputs := req.GetInputs()
	if inputs == nil {
		inputs = s
	} else if inputs, err = driftedInputs(inputs, state, outs); err != nil {
		return nil, err
	}
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: s, Inputs: inputs}, nil
}

// driftedInputs carries what a refresh found changed by hand (e.g. SUPERUSER granted, the password
// changed) into the inputs too, as the Terraform bridge does: the next diff compares the program's
// inputs with the real state, so `pulumi up --refresh` repairs the drift.
func driftedInputs(inputs *structpb.Struct, state, outs resource.PropertyMap) (*structpb.Struct, error) {
	in, err := unmarshal(inputs)
	if err != nil {
		return nil, err
	}
	for k, v := range outs {
		old, seen := state[k]
		_, isInput := in[k]
		switch {
		case isInput && seen && !old.DeepEquals(v):
			in[k] = v
		case !isInput && !seen:
			// Set on the server but neither in the program nor in the state (e.g. a role's
			// search_path set by hand): the Terraform diff sees it against the empty config too.
			in[k] = v
		}
	}
	return marshal(in)
}

func (p *pgProvider) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	k, err := kindOf(req.GetUrn())
	if err != nil {
		return nil, err
	}
	olds, err := unmarshal(req.GetOlds())
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	if req.GetPreview() {
		outs := olds.Copy()
		for key, v := range news {
			outs[key] = v
		}
		s, err := marshal(outs)
		if err != nil {
			return nil, err
		}
		return &pulumirpc.UpdateResponse{Properties: s}, nil
	}
	outs, err := k.update(ctx, p, req.GetId(), props(olds), props(news))
	if err != nil {
		return nil, err
	}
	s, err := marshal(outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: s}, nil
}

func (p *pgProvider) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*pbempty.Empty, error) {
	k, err := kindOf(req.GetUrn())
	if err != nil {
		return nil, err
	}
	state, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	if err := k.del(ctx, p, req.GetId(), props(state)); err != nil {
		return nil, err
	}
	return &pbempty.Empty{}, nil
}
