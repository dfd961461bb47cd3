package imports

// Test files are outside the rules: tests may import helpers a package
// itself must not.
import _ "github.com/prometheus/client_golang/prometheus"
