package rewrite

import (
	"errors"
	"fmt"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// TenantSetting is the session setting that names the tenant.
const TenantSetting = "stratum.tenant"

// CommandKind says what a statement does to the session's tenant.
type CommandKind int

const (
	// NotTenantCommand: the statement is for the backend.
	NotTenantCommand CommandKind = iota
	// SetTenant: SET stratum.tenant = 'x' (Value holds x).
	SetTenant
	// ResetTenant: RESET stratum.tenant or SET stratum.tenant TO DEFAULT.
	ResetTenant
	// ShowTenant: SHOW stratum.tenant.
	ShowTenant
)

// TenantCommand is the proxy-level meaning of a statement.
type TenantCommand struct {
	Kind  CommandKind
	Value string
}

// Errors from ClassifyTenantCommand; each is a statement the proxy refuses.
var (
	ErrNotAlone = errors.New("SET, RESET and SHOW of stratum.tenant must be sent as a statement of their own")
	ErrLocal    = errors.New("SET LOCAL stratum.tenant is not supported: the tenant is chosen for the whole session, outside a transaction")
	ErrBadValue = errors.New("SET stratum.tenant takes one tenant slug or id")
	ErrSyntax   = errors.New("syntax error")
)

// MentionsTenantSetting is the cheap pre-check: it reports whether sql could be
// a tenant command at all (a case-insensitive search for "stratum"), without
// parsing. Only statements for which it is true need ClassifyTenantCommand.
func MentionsTenantSetting(sql []byte) bool {
	const word = "stratum"
	for i := 0; i+len(word) <= len(sql); i++ {
		if sql[i]|0x20 != 's' {
			continue
		}
		j := 1
		for ; j < len(word); j++ {
			if sql[i+j]|0x20 != word[j] {
				break
			}
		}
		if j == len(word) {
			return true
		}
	}
	return false
}

// ClassifyTenantCommand parses sql (one Query message's text) and says whether
// it is a tenant command. A tenant command mixed with other statements is an
// error, as is a statement that fails to parse but still mentions the setting.
func ClassifyTenantCommand(sql string) (TenantCommand, error) {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		// Leave syntax errors to the backend, which reports them best.
		return TenantCommand{}, nil
	}
	var found *TenantCommand
	for _, raw := range tree.Stmts {
		cmd, err := classifyStmt(raw.Stmt)
		if err != nil {
			return TenantCommand{}, err
		}
		if cmd.Kind != NotTenantCommand {
			if len(tree.Stmts) > 1 {
				return TenantCommand{}, ErrNotAlone
			}
			found = &cmd
		}
	}
	if found == nil {
		return TenantCommand{}, nil
	}
	return *found, nil
}

// classifyStmt compares setting names as PostgreSQL does: ASCII letters
// case-insensitively, nothing else folded.
func classifyStmt(n *pg_query.Node) (TenantCommand, error) {
	if n == nil {
		return TenantCommand{}, nil
	}
	switch s := n.Node.(type) {
	case *pg_query.Node_VariableShowStmt:
		if guardEqualFold(s.VariableShowStmt.Name, TenantSetting) {
			return TenantCommand{Kind: ShowTenant}, nil
		}
	case *pg_query.Node_VariableSetStmt:
		v := s.VariableSetStmt
		if !guardEqualFold(v.Name, TenantSetting) {
			return TenantCommand{}, nil
		}
		if v.IsLocal {
			return TenantCommand{}, ErrLocal
		}
		switch v.Kind {
		case pg_query.VariableSetKind_VAR_RESET, pg_query.VariableSetKind_VAR_SET_DEFAULT:
			return TenantCommand{Kind: ResetTenant}, nil
		case pg_query.VariableSetKind_VAR_SET_VALUE:
			if len(v.Args) != 1 {
				return TenantCommand{}, ErrBadValue
			}
			val, ok := constString(v.Args[0])
			if !ok {
				return TenantCommand{}, ErrBadValue
			}
			return TenantCommand{Kind: SetTenant, Value: val}, nil
		default:
			return TenantCommand{}, fmt.Errorf("%w: unsupported form of SET", ErrBadValue)
		}
	}
	return TenantCommand{}, nil
}

// constString reads a string or bare-word constant (SET x = abc parses as a string).
func constString(n *pg_query.Node) (string, bool) {
	c := n.GetAConst()
	if c == nil {
		return "", false
	}
	if sv := c.GetSval(); sv != nil {
		return sv.Sval, true
	}
	return "", false
}
