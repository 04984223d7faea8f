// Command pulumi-resource-random is a local stand-in for the `random` provider plugin: the module proxy
// reachable here refuses github.com/pulumi/pulumi-random/provider/v4 (and the upstream Terraform
// provider), so this project builds its own plugin under the same name and version as the PyPI SDK
// pulumi-random it pins. It implements RandomPassword and RandomString with the semantics of the
// upstream resources (same inputs, defaults and outputs; every input change replaces the resource);
// the other random resources fail with a clear message.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"os"
	"sort"
	"strings"

	pbempty "google.golang.org/protobuf/types/known/emptypb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// version is set at build time: -ldflags "-X main.version=<version of the PyPI SDK>".
var version = "0.0.0-dev"

const (
	tokenPassword = "random:index/randomPassword:RandomPassword"
	tokenString   = "random:index/randomString:RandomString"

	charsLower   = "abcdefghijklmnopqrstuvwxyz"
	charsUpper   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	charsNumeric = "0123456789"
	// The upstream provider's default special characters.
	charsSpecial = "!@#$%&*()-_=+[]{}<>:?"
)

// inputKeys are the inputs of both resources; a change of any of them replaces the resource.
var inputKeys = []string{
	"keepers", "length", "lower", "minLower", "minNumeric", "minSpecial", "minUpper",
	"number", "numeric", "overrideSpecial", "special", "upper",
}

func main() {
	if err := provider.Main("random", func(*provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return &randomProvider{}, nil
	}); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-random: %v\n", err)
		os.Exit(1)
	}
}

type randomProvider struct {
	pulumirpc.UnimplementedResourceProviderServer
}

var marshalOpts = plugin.MarshalOptions{KeepUnknowns: true, SkipNulls: true}

func unmarshal(s *structpb.Struct) (resource.PropertyMap, error) {
	return plugin.UnmarshalProperties(s, marshalOpts)
}

func marshal(m resource.PropertyMap) (*structpb.Struct, error) {
	return plugin.MarshalProperties(m, marshalOpts)
}

func checkType(urn string) (string, error) {
	t := string(resource.URN(urn).Type())
	switch t {
	case tokenPassword, tokenString:
		return t, nil
	}
	return "", status.Errorf(codes.Unimplemented,
		"%s is not implemented by this locally built random provider (only RandomPassword and RandomString are)", t)
}

func (p *randomProvider) GetPluginInfo(context.Context, *pbempty.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (p *randomProvider) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	return &pulumirpc.GetSchemaResponse{Schema: fmt.Sprintf(`{"name":"random","version":%q}`, version)}, nil
}

func (p *randomProvider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *randomProvider) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *randomProvider) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{SupportsPreview: true}, nil
}

func (p *randomProvider) Cancel(context.Context, *pbempty.Empty) (*pbempty.Empty, error) {
	return &pbempty.Empty{}, nil
}

// Check fills in the upstream defaults and validates the lengths.
func (p *randomProvider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	if _, err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	var failures []*pulumirpc.CheckFailure
	fail := func(prop, format string, args ...any) {
		failures = append(failures, &pulumirpc.CheckFailure{Property: prop, Reason: fmt.Sprintf(format, args...)})
	}
	for _, k := range []string{"lower", "upper", "special"} {
		if _, ok := news[resource.PropertyKey(k)]; !ok {
			news[resource.PropertyKey(k)] = resource.NewBoolProperty(true)
		}
	}
	// `number` is the deprecated name of `numeric`: either one set to false disables digits.
	numV, hasNum := news["number"]
	numericV, hasNumeric := news["numeric"]
	switch {
	case hasNumeric && !hasNum:
		news["number"] = numericV
	case hasNum && !hasNumeric:
		news["numeric"] = numV
	case !hasNum && !hasNumeric:
		news["number"] = resource.NewBoolProperty(true)
		news["numeric"] = resource.NewBoolProperty(true)
	}
	mins := 0.0
	for _, k := range []string{"minLower", "minNumeric", "minSpecial", "minUpper"} {
		v, ok := news[resource.PropertyKey(k)]
		if !ok {
			news[resource.PropertyKey(k)] = resource.NewNumberProperty(0)
			continue
		}
		if v.IsNumber() {
			if v.NumberValue() < 0 {
				fail(k, "%s must be >= 0", k)
			}
			mins += v.NumberValue()
		}
	}
	length, ok := news["length"]
	switch {
	case !ok:
		fail("length", "missing required property 'length'")
	case length.IsNumber():
		if length.NumberValue() < 1 {
			fail("length", "length must be >= 1")
		} else if length.NumberValue() < mins {
			fail("length", "length (%v) must be >= minUpper + minLower + minNumeric + minSpecial (%v)",
				length.NumberValue(), mins)
		}
	case !length.IsComputed():
		fail("length", "length must be a number")
	}
	out, err := marshal(news)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CheckResponse{Inputs: out, Failures: failures}, nil
}

// Diff: any changed input replaces the resource (as upstream: every attribute forces a new resource).
func (p *randomProvider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	if _, err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	olds, err := unmarshal(req.GetOldInputs())
	if err != nil {
		return nil, err
	}
	if len(olds) == 0 {
		// Older states have no recorded inputs: compare with the outputs.
		if olds, err = unmarshal(req.GetOlds()); err != nil {
			return nil, err
		}
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	var replaces []string
	for _, k := range inputKeys {
		o, n := olds[resource.PropertyKey(k)], news[resource.PropertyKey(k)]
		if n.IsComputed() || !o.DeepEquals(n) {
			replaces = append(replaces, k)
		}
	}
	sort.Strings(replaces)
	if len(replaces) == 0 {
		return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
	}
	return &pulumirpc.DiffResponse{
		Changes:  pulumirpc.DiffResponse_DIFF_SOME,
		Replaces: replaces,
		Diffs:    replaces,
	}, nil
}

func boolOf(m resource.PropertyMap, k string) bool {
	v, ok := m[resource.PropertyKey(k)]
	return ok && v.IsBool() && v.BoolValue()
}

func intOf(m resource.PropertyMap, k string) int {
	v, ok := m[resource.PropertyKey(k)]
	if !ok || !v.IsNumber() {
		return 0
	}
	return int(v.NumberValue())
}

func pick(set string) (byte, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(len(set))))
	if err != nil {
		return 0, err
	}
	return set[n.Int64()], nil
}

// generate builds the random string: the minimum counts from each class first, the rest from all
// enabled classes, then a cryptographically random shuffle.
func generate(in resource.PropertyMap) (string, error) {
	length := intOf(in, "length")
	special := charsSpecial
	if v, ok := in["overrideSpecial"]; ok && v.IsString() {
		special = v.StringValue()
	}
	classes := []struct {
		enabled bool
		chars   string
		min     int
	}{
		{boolOf(in, "upper"), charsUpper, intOf(in, "minUpper")},
		{boolOf(in, "lower"), charsLower, intOf(in, "minLower")},
		{boolOf(in, "numeric") && boolOf(in, "number"), charsNumeric, intOf(in, "minNumeric")},
		{boolOf(in, "special"), special, intOf(in, "minSpecial")},
	}
	var all strings.Builder
	out := make([]byte, 0, length)
	for _, c := range classes {
		if !c.enabled || c.chars == "" {
			continue
		}
		all.WriteString(c.chars)
		for i := 0; i < c.min; i++ {
			b, err := pick(c.chars)
			if err != nil {
				return "", err
			}
			out = append(out, b)
		}
	}
	if all.Len() == 0 {
		return "", errors.New("no character class enabled (upper, lower, numeric and special are all false)")
	}
	for len(out) < length {
		b, err := pick(all.String())
		if err != nil {
			return "", err
		}
		out = append(out, b)
	}
	for i := len(out) - 1; i > 0; i-- {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return "", err
		}
		out[i], out[j.Int64()] = out[j.Int64()], out[i]
	}
	return string(out), nil
}

func (p *randomProvider) Create(_ context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	typ, err := checkType(req.GetUrn())
	if err != nil {
		return nil, err
	}
	in, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	outs := in.Copy()
	unknown := resource.MakeComputed(resource.NewStringProperty(""))
	if req.GetPreview() {
		outs["result"] = unknown
		if typ == tokenPassword {
			outs["bcryptHash"] = unknown
		}
		s, err := marshal(outs)
		if err != nil {
			return nil, err
		}
		return &pulumirpc.CreateResponse{Properties: s}, nil
	}
	result, err := generate(in)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	outs["result"] = resource.NewStringProperty(result)
	id := result
	if typ == tokenPassword {
		hash, err := bcrypt.GenerateFromPassword([]byte(result), bcrypt.DefaultCost)
		if err != nil {
			return nil, err
		}
		outs["bcryptHash"] = resource.NewStringProperty(string(hash))
		id = "none" // as upstream: the password is not used as the ID.
	}
	s, err := marshal(outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: s}, nil
}

// Read returns the recorded state: the value only exists in the state.
func (p *randomProvider) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	if _, err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	if req.GetProperties() == nil || len(req.GetProperties().GetFields()) == 0 {
		return nil, status.Error(codes.Unimplemented, "importing random values is not supported by this local provider")
	}
	inputs := req.GetInputs()
	if inputs == nil {
		state, err := unmarshal(req.GetProperties())
		if err != nil {
			return nil, err
		}
		ins := resource.PropertyMap{}
		for _, k := range inputKeys {
			if v, ok := state[resource.PropertyKey(k)]; ok {
				ins[resource.PropertyKey(k)] = v
			}
		}
		if inputs, err = marshal(ins); err != nil {
			return nil, err
		}
	}
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: inputs}, nil
}

// Update is only reached for no-op changes (every real change replaces): keep the value, take the inputs.
func (p *randomProvider) Update(_ context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	if _, err := checkType(req.GetUrn()); err != nil {
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
	for k, v := range news {
		olds[k] = v
	}
	s, err := marshal(olds)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: s}, nil
}

// Delete has nothing to remove outside the state.
func (p *randomProvider) Delete(_ context.Context, req *pulumirpc.DeleteRequest) (*pbempty.Empty, error) {
	if _, err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	return &pbempty.Empty{}, nil
}
