// Package e2e holds Quotagate's end-to-end accuracy proof: the promise of
// ARCHITECTURE.md section 4 checked on the whole system rather than on one
// package.
//
// Each test starts three gateway replicas as separate processes (the
// cmd/gateway binary, built once per test run), each with its own Redis
// connection, all sharing one Redis and one budgets file, in front of one
// simulated Bedrock (package bedrocksim) configured with the same TPM, RPM
// and concurrency as the budget and the same window. Many concurrent
// clients, using the unmodified AWS SDK for Go v2, drive the replicas at
// three times the budget or more, with Converse, ConverseStream, InvokeModel
// and InvokeModelWithResponseStream mixed and some clients cancelling in
// the middle of a stream.
//
// The verdict is read from the simulator, not from the gateway: an upstream
// that enforces the same quota must throttle nothing, see no more than the
// budget's tokens and requests in any window and no more than its
// concurrency at once, and still be kept busy at 95% or more of its tokens
// per window while the clients ask for more; no concurrency lease may be
// left behind in Redis.
//
// The simulator runs in the test process (bedrocksim.New on a loopback
// listener) because cmd/bedrock-sim exposes neither its window nor its
// statistics; the replicas, whose independence is what is being tested,
// are real processes.
//
// Redis is 127.0.0.1:6379 unless QUOTAGATE_TEST_REDIS_URL names another.
// Every test uses a key prefix of its own and deletes only its own keys.
// Without a Redis the tests fall back to an embedded miniredis (it listens
// on a real port, so the replicas can share it) unless
// QUOTAGATE_TEST_REQUIRE_REDIS=1; the Redis restart test needs the
// redis-server binary and is skipped without it under the same rule.
//
// Two variables help an investigation: QUOTAGATE_E2E_LOG_LEVEL sets the
// replicas' log level (default warn; info adds one access-log line per
// request to the replica log printed on failure), and
// QUOTAGATE_E2E_TIMELINE=1 logs, per bucket of the run, what the simulator
// served and how often the gateway throttled.
//
// The package has test files only; this file exists for the package
// documentation.
package e2e
