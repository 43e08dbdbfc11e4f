//go:build terratest

// End-to-end test of the LNN stack: deploy it (unique names), train a small model through
// LaunchLambda, check the results, destroy everything.
//
//	cd tests/infra/terratest && go mod tidy && go test -tags terratest -v -count=1 -timeout 100m ./...
//
// Behind the terratest build tag so that `go test ./...` and `go vet ./...` never start a real
// deployment by accident. Creating and destroying VPC functions and a Multi-AZ cache takes 30-60
// minutes; a Go timeout kills the test without running its deferred Destroy, so the stack's working
// copy (state included, local backend) is kept under LNN_TERRATEST_WORKDIR, where
// .github/scripts/terratest_cleanup.sh destroys whatever is left and then checks by tag that
// nothing tagged Test=terratest remains.
//
// Endpoints: the same variables as the Terraform tests. With AWS_ENDPOINT_URL set (moto server),
// every AWS call of Terraform and of this test goes there; without it, to the real account in
// AWS_REGION. An emulator creates the functions but does not run their image, so against one the
// test checks everything except the finished run (see README.md).
package terratest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go/service/dynamodb"
	"github.com/aws/aws-sdk-go/service/lambda"
	"github.com/aws/aws-sdk-go/service/sns"
	"github.com/gruntwork-io/terratest/modules/random"
	"github.com/gruntwork-io/terratest/modules/retry"
	"github.com/gruntwork-io/terratest/modules/shell"
	"github.com/gruntwork-io/terratest/modules/terraform"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	logRetentionDays = 7
	minTestAccuracy  = 0.8
)

// A small request: the built-in "moons" dataset, two layers, a few hundred steps.
var launchRequest = map[string]interface{}{
	"dataset":       "moons",
	"neurons":       map[string]int{"layer1": 8, "layer2": 1},
	"activations":   map[string]string{"layer1": "relu", "layer2": "sigmoid"},
	"epochs":        40,
	"learning_rate": 0.5,
	"seed":          7,
	"chain":         "per_step",
}

func endpoint() string { return os.Getenv("AWS_ENDPOINT_URL") }

func region() string {
	for _, name := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if value := os.Getenv(name); value != "" {
			return value
		}
	}
	return "us-east-1"
}

func awsSession(t *testing.T) *session.Session {
	config := aws.Config{Region: aws.String(region())}
	if url := endpoint(); url != "" {
		config.Endpoint = aws.String(url)
		config.S3ForcePathStyle = aws.Bool(true)
	}
	sess, err := session.NewSessionWithOptions(session.Options{
		Config:            config,
		SharedConfigState: session.SharedConfigEnable,
	})
	require.NoError(t, err)
	return sess
}

func TestLNNStack(t *testing.T) {
	t.Parallel()

	id := strings.ToLower(random.UniqueId())
	// Inside the apply role's "<name_prefix>-*" role prefix (the workflow assumes that role).
	name := "lnn-tt-" + id
	imageTag := "terratest-" + id
	repoRoot, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)

	envVars := map[string]string{"AWS_REGION": region()}
	if url := endpoint(); url != "" {
		envVars["AWS_ENDPOINT_URL"] = url
	}
	options := terraform.WithDefaultRetryableErrors(t, &terraform.Options{
		TerraformDir: workCopy(t, repoRoot, name),
		Vars: map[string]interface{}{
			"name":                         name,
			"aws_region":                   region(),
			"image_tag":                    imageTag,
			"force_destroy":                true,
			"dynamodb_deletion_protection": false,
			"tags":                         map[string]string{"Test": "terratest", "TestId": id},
		},
		EnvVars: envVars,
		NoColor: true,
	})
	defer terraform.Destroy(t, options)

	// A container-image function needs its image first: the registry, then the image, then the rest.
	registryOptions := *options
	registryOptions.Targets = []string{"module.registry"}
	terraform.InitAndApply(t, &registryOptions)
	repositoryURL := terraform.Output(t, &registryOptions, "ecr_repository_url")
	if endpoint() == "" {
		pushImage(t, repoRoot, repositoryURL, imageTag)
	}

	terraform.InitAndApply(t, options)

	launchName := terraform.Output(t, options, "launch_function_name")
	trainerName := terraform.Output(t, options, "trainer_function_name")
	tableName := terraform.Output(t, options, "table_name")
	topicArn := terraform.Output(t, options, "sns_topic_arn")

	sess := awsSession(t)
	lambdaClient := lambda.New(sess)

	t.Run("functions run in the VPC", func(t *testing.T) {
		for _, fn := range []string{launchName, trainerName} {
			cfg, err := lambdaClient.GetFunctionConfiguration(&lambda.GetFunctionConfigurationInput{FunctionName: aws.String(fn)})
			require.NoError(t, err)
			require.NotNil(t, cfg.VpcConfig, fn)
			assert.NotEmpty(t, aws.StringValue(cfg.VpcConfig.VpcId), fn)
			assert.GreaterOrEqual(t, len(cfg.VpcConfig.SubnetIds), 1, fn)
			assert.Len(t, cfg.VpcConfig.SecurityGroupIds, 1, fn)
			assert.Equal(t, lambda.PackageTypeImage, aws.StringValue(cfg.PackageType), fn)
		}
	})

	t.Run("log groups keep 7 days", func(t *testing.T) {
		logs := cloudwatchlogs.New(sess)
		for _, fn := range []string{launchName, trainerName} {
			group := "/aws/lambda/" + fn
			out, err := logs.DescribeLogGroups(&cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: aws.String(group)})
			require.NoError(t, err)
			found := false
			for _, g := range out.LogGroups {
				if aws.StringValue(g.LogGroupName) == group {
					found = true
					assert.Equal(t, int64(logRetentionDays), aws.Int64Value(g.RetentionInDays), group)
				}
			}
			assert.True(t, found, "log group %s", group)
		}
	})

	t.Run("the SNS topic exists", func(t *testing.T) {
		out, err := sns.New(sess).GetTopicAttributes(&sns.GetTopicAttributesInput{TopicArn: aws.String(topicArn)})
		require.NoError(t, err)
		assert.Equal(t, topicArn, aws.StringValue(out.Attributes["TopicArn"]))
	})

	t.Run("a run trains to SUCCEEDED", func(t *testing.T) {
		if endpoint() != "" {
			t.Skip("an emulator does not run the image: the finished run is proven by tests/infra/images (pytest)")
		}
		payload, err := json.Marshal(launchRequest)
		require.NoError(t, err)
		out, err := lambdaClient.Invoke(&lambda.InvokeInput{FunctionName: aws.String(launchName), Payload: payload})
		require.NoError(t, err)
		require.Nil(t, out.FunctionError, "launch failed: %s", string(out.Payload))
		var launched struct {
			RunID  string `json:"run_id"`
			Status string `json:"status"`
		}
		require.NoError(t, json.Unmarshal(out.Payload, &launched))
		require.NotEmpty(t, launched.RunID)
		assert.Equal(t, "RUNNING", launched.Status)

		db := dynamodb.New(sess)
		key := map[string]*dynamodb.AttributeValue{
			"pk": {S: aws.String("RUN#" + launched.RunID)},
			"sk": {S: aws.String("RUN")},
		}
		// Eventually consistent in every sense: asynchronous hand-offs, cold starts, retries.
		status := retry.DoWithRetry(t, "run "+launched.RunID+" finishes", 90, 10*time.Second, func() (string, error) {
			item, err := db.GetItem(&dynamodb.GetItemInput{TableName: aws.String(tableName), Key: key, ConsistentRead: aws.Bool(true)})
			if err != nil {
				return "", err
			}
			if item.Item == nil || item.Item["status"] == nil {
				return "", fmt.Errorf("no run item yet")
			}
			switch s := aws.StringValue(item.Item["status"].S); s {
			case "SUCCEEDED":
				return s, nil
			case "FAILED", "CANCELLED":
				reason := ""
				if item.Item["failure_reason"] != nil {
					reason = aws.StringValue(item.Item["failure_reason"].S)
				}
				return s, retry.FatalError{Underlying: fmt.Errorf("run ended %s: %s", s, reason)}
			default:
				return "", fmt.Errorf("run is %s", s)
			}
		})
		require.Equal(t, "SUCCEEDED", status)

		item, err := db.GetItem(&dynamodb.GetItemInput{TableName: aws.String(tableName), Key: key, ConsistentRead: aws.Bool(true)})
		require.NoError(t, err)
		require.NotNil(t, item.Item["test_accuracy"], "no test_accuracy on the run item")
		var accuracy float64
		_, err = fmt.Sscan(aws.StringValue(item.Item["test_accuracy"].N), &accuracy)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, accuracy, minTestAccuracy)
		assert.LessOrEqual(t, accuracy, 1.0)
	})
}

// pushImage builds images/trainer/Dockerfile and pushes it as repositoryURL:tag (real AWS only).
func pushImage(t *testing.T, repoRoot, repositoryURL, tag string) {
	registry := strings.SplitN(repositoryURL, "/", 2)[0]
	image := repositoryURL + ":" + tag
	// The registry password goes through a pipe, never through an argument or a log line.
	shell.RunCommand(t, shell.Command{
		Command: "bash",
		Args: []string{"-c", `aws ecr get-login-password --region "$1" | docker login --username AWS --password-stdin "$2"`,
			"login", region(), registry},
	})
	shell.RunCommand(t, shell.Command{
		Command:    "docker",
		WorkingDir: repoRoot,
		Args:       []string{"build", "--provenance=false", "-f", "images/trainer/Dockerfile", "-t", image, "."},
	})
	shell.RunCommand(t, shell.Command{Command: "docker", Args: []string{"push", image}})
}

// workCopy copies terraform/ to LNN_TERRATEST_WORKDIR/<name> (or a temporary directory) with a
// local backend: the state outlives a killed test, for the cleanup script.
func workCopy(t *testing.T, repoRoot, name string) string {
	root := os.Getenv("LNN_TERRATEST_WORKDIR")
	if root == "" {
		root = t.TempDir()
	}
	dir := filepath.Join(root, name)
	shell.RunCommand(t, shell.Command{Command: "cp", Args: []string{"-R", filepath.Join(repoRoot, "terraform"), dir}})
	override := "terraform {\n  backend \"local\" {}\n}\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "backend_override.tf"), []byte(override), 0o600))
	return dir
}
