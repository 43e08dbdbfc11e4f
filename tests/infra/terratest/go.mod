module github.com/lnn/lnn/tests/infra/terratest

go 1.22

// go.sum is not committed: the machines this repository is developed on cannot reach the Go module
// proxy. .github/workflows/terratest.yml runs `go mod tidy && go mod download && go mod verify`
// first, which resolves the indirect requirements and checks every module against the public
// checksum database.
require (
	github.com/aws/aws-sdk-go v1.55.5
	github.com/gruntwork-io/terratest v0.47.2
	github.com/stretchr/testify v1.9.0
)
