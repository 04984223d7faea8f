package main

import (
	"context"
	"testing"

	"github.com/pulumi/pulumi-yaml/pkg/server"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// Link is the one RPC added to upstream's host: "done", no instructions, no error (the CLI's
// `pulumi package add` stops on an error there).
func TestLinkIsANoOp(t *testing.T) {
	h := host{server.NewLanguageHost("", "", true)}
	resp, err := h.Link(context.Background(), &pulumirpc.LinkRequest{})
	if err != nil {
		t.Fatalf("Link: %v", err)
	}
	if resp.GetImportInstructions() != "" {
		t.Fatalf("Link returned instructions: %q", resp.GetImportInstructions())
	}
}

// Every other RPC is upstream's: GetPluginInfo answers with the version set at link time.
func TestOtherRPCsAreUpstreams(t *testing.T) {
	h := host{server.NewLanguageHost("", "", true)}
	if _, err := h.GetPluginInfo(context.Background(), nil); err != nil {
		t.Fatalf("GetPluginInfo: %v", err)
	}
}
