// Package customerkit deploys the customer setup kit (deploy/customer) on a local moto as a customer would: the
// CloudFormation template as a stack on moto's CloudFormation, the Terraform module with terraform and a local
// provider mirror; and holds the workarounds moto needs before a role the kit made can deliver, each named with
// the moto behaviour it works around.
package customerkit

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"

	"github.com/wiv/out_wivaudit/test/backend"
)

// Destination is what a customer submits in guide step 3.3, taken from the kit's outputs, with every output.
type Destination struct {
	Bucket, RoleARN, Region, ExternalID string
	Outputs                             map[string]string
}

// RoleName is the name part of the role's ARN.
func (d Destination) RoleName() string {
	return d.RoleARN[strings.LastIndex(d.RoleARN, "/")+1:]
}

// Stack is a deployment of the kit's CloudFormation template: its stack name and parameters (an empty one
// keeps the template's default).
type Stack struct {
	Template                                                       string // the path of cloudformation.yaml
	Name                                                           string
	ExternalID, TrustedPrincipal, RoleName, Encryption, BucketName string
}

// DeployStack creates the stack with the administrator's credentials and waits until it is complete.
func DeployStack(ctx context.Context, m *backend.Moto, s Stack) (Destination, error) {
	template, err := os.ReadFile(s.Template)
	if err != nil {
		return Destination{}, err
	}
	var params []cftypes.Parameter
	for _, p := range [][2]string{{"ExternalId", s.ExternalID}, {"TrustedPrincipal", s.TrustedPrincipal},
		{"RoleName", s.RoleName}, {"Encryption", s.Encryption}, {"BucketName", s.BucketName}} {
		if p[1] != "" {
			params = append(params, cftypes.Parameter{ParameterKey: aws.String(p[0]), ParameterValue: aws.String(p[1])})
		}
	}
	cf := m.CloudFormation()
	if _, err := cf.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName:    aws.String(s.Name),
		TemplateBody: aws.String(string(template)),
		Parameters:   params,
		Capabilities: []cftypes.Capability{cftypes.CapabilityCapabilityNamedIam},
	}); err != nil {
		return Destination{}, fmt.Errorf("create stack %s: %w", s.Name, err)
	}
	stacks, err := cloudformation.NewStackCreateCompleteWaiter(cf, func(o *cloudformation.StackCreateCompleteWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, time.Second
	}).WaitForOutput(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(s.Name)}, time.Minute)
	if err != nil {
		return Destination{}, fmt.Errorf("stack %s: %w", s.Name, err)
	}
	out := map[string]string{}
	for _, o := range stacks.Stacks[0].Outputs {
		out[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
	}
	return Destination{Bucket: out["BucketName"], RoleARN: out["RoleArn"], Region: out["Region"], ExternalID: s.ExternalID,
		Outputs: out}, nil
}
