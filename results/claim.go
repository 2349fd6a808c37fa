package results

// Claim statuses.
const (
	ClaimConfirmed   = "confirmed"
	ClaimRefuted     = "refuted"
	ClaimNotMeasured = "not measured"
	// ClaimInconclusive: measured, but the figures' intervals straddle the claim's thresholds.
	ClaimInconclusive = "inconclusive"
)

// Claim is one seed claim checked against this run's figures.
type Claim struct {
	// ID is a short stable key, e.g. "rules-quadratic", "ebpf-flat", "pod-add-no-map-change".
	ID string `json:"id"`
	// Statement is the claim in README terms, e.g. "iptables rules grow as O(pods²)".
	Statement string `json:"statement"`
	// Status is ClaimConfirmed, ClaimRefuted, ClaimInconclusive or ClaimNotMeasured.
	Status string `json:"status"`
	// Evidence is one sentence with the figures behind the status.
	Evidence string `json:"evidence,omitempty"`
	// Figures are the numbers behind the status by name (units in the name, e.g. "exponent", "p99_ns").
	Figures map[string]float64 `json:"figures,omitempty"`
}
