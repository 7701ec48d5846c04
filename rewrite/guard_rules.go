package rewrite

import (
	"fmt"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// This file holds the refusal rules applied to parsed statements. The walk
// visits every node of a statement (expressions, subqueries, CTEs, function
// SET clauses, rule actions, ...), so a rule fires wherever its node appears.

// denial is a refusal: its SQLSTATE, a Reason label and the client-facing
// message.
type denial struct {
	code    string
	reason  string
	message string
}

// checker accumulates what checking one text finds. It is used by one
// goroutine for one call to checkSQL.
type checker struct {
	// where is "" at the top level, or what encloses the SQL being checked
	// ("a DO block", "a function body"), for messages.
	where string
	// dynamic: string constants may be executed as SQL (a PL/pgSQL body), so
	// each one that could hide a refused statement is checked as SQL too.
	dynamic bool
	// depth counts bodies and dynamic strings entered; see maxGuardDepth.
	depth int
	// deny is the first refusal found; checking stops at it.
	deny *denial
	// resets: DISCARD or RESET ALL seen.
	resets bool
	// sawPgSettings: the current statement names the relation pg_settings.
	sawPgSettings bool
}

// maxGuardDepth bounds nesting of DO blocks, function bodies and dynamic SQL
// strings; deeper nesting is refused rather than inspected.
const maxGuardDepth = 6

// refuse records a refusal (SQLSTATE 42501) unless one is already recorded.
// The message reads "<what> is not allowed through stratum-proxy[ (inside
// ...)]: <why>".
func (c *checker) refuse(reason, what, why string) {
	c.refuseCode(CodeInsufficientPrivilege, reason, what, why)
}

// refuseCode is refuse with another SQLSTATE: CodeFeatureNotSupported for a
// value of a setting the proxy keeps fixed (the lexer's settings), which is
// no matter of privilege.
func (c *checker) refuseCode(code, reason, what, why string) {
	if c.deny != nil {
		return
	}
	ctx := ""
	if c.where != "" {
		ctx = " (inside " + c.where + ")"
	}
	c.deny = &denial{
		code:    code,
		reason:  reason,
		message: fmt.Sprintf("%s is not allowed through stratum-proxy%s: %s", what, ctx, why),
	}
}

const (
	whyRole     = "the session's role is the tenant's"
	whyStratum  = "the stratum.* settings belong to the proxy; only SET, RESET and SHOW stratum.tenant, each sent alone, are accepted"
	whyRoles    = "the tenant's role must not reshape roles"
	whyDatabase = "the tenant's role must not reshape databases"
	whyUnseen   = "the proxy cannot see what it would run"
	// whyStandardStrings and whyEncoding say why the lexer's settings stay
	// fixed; the startup allow-list (proxy/startupparams.go) gives the same
	// reasons for the same values.
	whyStandardStrings = "with it off, a backslash can end a string literal for PostgreSQL but not for the proxy, " +
		"so string literals could hide statements from the proxy's checks; stratum-proxy keeps it on"
	whyEncoding = "in this encoding a quote or backslash byte can be part of a multi-byte character, so string " +
		"literals could hide statements from the proxy's checks; use UTF8"
	whyUnknownValue = "the proxy cannot tell which value it sets; write the value as a constant"
)

// topStatements checks the statements of a text that parsed. The proxy's own
// tenant commands (SET, RESET and SHOW of stratum.tenant) are allowed here
// only when sent alone, as ClassifyTenantCommand requires.
func (c *checker) topStatements(stmts []*pg_query.RawStmt) guardResult {
	var res guardResult
	res.class.tx = len(stmts) > 0
	for _, raw := range stmts {
		n := raw.GetStmt()
		cls, reason := c.topStatement(n, len(stmts))
		res.add(cls, reason)
	}
	return res
}

// topStatement checks one top-level statement of a text holding n of them.
func (c *checker) topStatement(n *pg_query.Node, count int) (guardClass, string) {
	switch s := n.GetNode().(type) {
	case *pg_query.Node_VariableSetStmt:
		v := s.VariableSetStmt
		if v.Kind == pg_query.VariableSetKind_VAR_RESET_ALL {
			c.resets = true
			return guardClass{}, "reset_all"
		}
		if guardEqualFold(v.Name, TenantSetting) {
			switch {
			case v.IsLocal:
				c.refuse("tenant_setting_local", "SET LOCAL stratum.tenant",
					"the tenant is chosen for the whole session, outside a transaction")
			case count > 1:
				c.refuse("tenant_setting_not_alone", "SET or RESET of stratum.tenant together with other statements", whyStratum)
			}
			return guardClass{}, "tenant_setting"
		}
	case *pg_query.Node_VariableShowStmt:
		if guardEqualFold(s.VariableShowStmt.Name, TenantSetting) {
			if count > 1 {
				c.refuse("tenant_setting_not_alone", "SHOW stratum.tenant together with other statements", whyStratum)
			}
			return guardClass{}, "tenant_setting"
		}
	}
	cls := c.statement(n)
	return cls, resetReason(n)
}

// resetReason is the Reason of a top-level DISCARD or RESET ALL, else "".
func resetReason(n *pg_query.Node) string {
	d := n.GetDiscardStmt()
	if d == nil {
		return ""
	}
	switch d.Target {
	case pg_query.DiscardMode_DISCARD_ALL:
		return "discard_all"
	case pg_query.DiscardMode_DISCARD_PLANS:
		return "discard_plans"
	case pg_query.DiscardMode_DISCARD_SEQUENCES:
		return "discard_sequences"
	case pg_query.DiscardMode_DISCARD_TEMP:
		return "discard_temp"
	}
	return "discard"
}

// statement classifies one statement and applies every refusal rule to it and
// to everything inside it.
func (c *checker) statement(n *pg_query.Node) guardClass {
	cls := guardClassify(n)
	c.sawPgSettings = false
	c.walk(n.ProtoReflect())
	if c.sawPgSettings && (cls.writes || cls.ddl) {
		// pg_settings has an UPDATE rule that calls set_config: UPDATE
		// pg_settings SET setting = 'x' WHERE name = 'role' is SET ROLE. Views
		// and rules over it are refused for the same reason; reading it is fine.
		c.refuse("pg_settings_write", "a statement that writes to or builds on pg_settings",
			"updating pg_settings changes session settings, including the role")
	}
	return cls
}

// walk applies the rules to m and, unless a rule handled them, its children.
func (c *checker) walk(m protoreflect.Message) {
	if c.deny != nil || !m.IsValid() {
		return
	}
	switch x := m.Interface().(type) {
	case *pg_query.A_Const:
		if sv := x.GetSval(); sv != nil && c.dynamic {
			c.dynamicString(sv.Sval)
		}
		return // a literal, not an identifier: see *pg_query.String below
	case *pg_query.String:
		// An identifier (constants were handled above): set_config named
		// anywhere but in a call, e.g. as an aggregate's transition function.
		if guardEqualFold(x.Sval, "set_config") {
			c.refuse("set_config_reference", "naming set_config other than in a call", whyRole)
		}
	case *pg_query.FuncCall:
		c.funcCall(x)
		c.walkExcept(m, "funcname")
		return
	case *pg_query.RangeVar:
		if guardEqualFold(x.Relname, "pg_settings") {
			c.sawPgSettings = true
		}
	case *pg_query.VariableSetStmt:
		c.variableSet(x)
	case *pg_query.DiscardStmt:
		c.resets = true
	case *pg_query.AlterRoleSetStmt:
		c.refuse("alter_role_set", "ALTER ROLE ... SET", whyRoles)
	case *pg_query.AlterRoleStmt:
		c.refuse("alter_role", "ALTER ROLE", whyRoles)
	case *pg_query.CreateRoleStmt:
		c.refuse("create_role", "CREATE ROLE", whyRoles)
	case *pg_query.DropRoleStmt:
		c.refuse("drop_role", "DROP ROLE", whyRoles)
	case *pg_query.GrantRoleStmt:
		verb := "GRANT"
		if !x.IsGrant {
			verb = "REVOKE"
		}
		c.refuse("grant_role", verb+" of role membership", whyRoles)
	case *pg_query.RenameStmt:
		switch x.RenameType {
		case pg_query.ObjectType_OBJECT_ROLE:
			c.refuse("alter_role", "ALTER ROLE ... RENAME", whyRoles)
		case pg_query.ObjectType_OBJECT_DATABASE:
			c.refuse("alter_database", "ALTER DATABASE ... RENAME", whyDatabase)
		}
	case *pg_query.AlterOwnerStmt:
		if x.ObjectType == pg_query.ObjectType_OBJECT_DATABASE {
			c.refuse("alter_database", "ALTER DATABASE ... OWNER", whyDatabase)
		}
	case *pg_query.AlterDatabaseSetStmt:
		c.refuse("alter_database_set", "ALTER DATABASE ... SET", whyDatabase)
	case *pg_query.AlterDatabaseStmt, *pg_query.AlterDatabaseRefreshCollStmt:
		c.refuse("alter_database", "ALTER DATABASE", whyDatabase)
	case *pg_query.AlterSystemStmt:
		c.refuse("alter_system", "ALTER SYSTEM", "server configuration belongs to the operator")
	case *pg_query.LoadStmt:
		c.refuse("load", "LOAD", "loading server libraries belongs to the operator")
	case *pg_query.CopyStmt:
		switch {
		case x.IsProgram:
			c.refuse("copy_program", "COPY ... PROGRAM", "it runs a program on the database server")
		case x.Filename != "":
			c.refuse("copy_file", "COPY to or from a server-side file", "use COPY ... FROM STDIN or COPY ... TO STDOUT")
		}
	case *pg_query.DoStmt:
		c.doStmt(x)
	case *pg_query.CreateFunctionStmt:
		c.createFunction(x)
	}
	c.walkExcept(m, "")
}

// walkExcept walks m's message-valued fields, skipping the one named skip.
func (c *checker) walkExcept(m protoreflect.Message, skip protoreflect.Name) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Name() == skip || fd.IsMap() ||
			(fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind) {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len() && c.deny == nil; i++ {
				c.walk(l.Get(i).Message())
			}
		} else {
			c.walk(v.Message())
		}
		return c.deny == nil
	})
}

// variableSet applies the rules for SET, RESET and function SET clauses.
// PostgreSQL compares setting names case-insensitively, in ASCII only.
func (c *checker) variableSet(v *pg_query.VariableSetStmt) {
	if v.Kind == pg_query.VariableSetKind_VAR_RESET_ALL {
		c.resets = true
		return
	}
	verb := "SET"
	if v.IsLocal {
		verb = "SET LOCAL"
	}
	if v.Kind == pg_query.VariableSetKind_VAR_RESET {
		verb = "RESET"
	}
	switch name := v.Name; {
	case guardEqualFold(name, "role"):
		c.refuse("set_role", verb+" ROLE", whyRole)
	case guardEqualFold(name, "session_authorization"):
		c.refuse("set_session_authorization", verb+" SESSION AUTHORIZATION", whyRole)
	case guardHasPrefixFold(name, "stratum."):
		c.refuse("stratum_setting", verb+" "+name, whyStratum)
	case guardEqualFold(name, "standard_conforming_strings"):
		if v.Kind == pg_query.VariableSetKind_VAR_SET_VALUE && !setsBoolOn(v.Args) {
			c.refuseCode(CodeFeatureNotSupported, "standard_conforming_strings",
				verb+" standard_conforming_strings other than on", whyStandardStrings)
		}
	case guardEqualFold(name, "client_encoding"):
		if v.Kind == pg_query.VariableSetKind_VAR_SET_VALUE && len(v.Args) == 1 {
			if enc, ok := guardConstText(v.Args[0]); ok && unsafeClientEncoding(enc) {
				c.refuseCode(CodeFeatureNotSupported, "client_encoding", verb+" client_encoding to "+enc, whyEncoding)
			}
		}
	}
}

// funcCall applies the set_config rules: set_config (in any schema) whose
// setting name is role, session_authorization, stratum.*, or is not a
// constant, is refused, and so is set_config of client_encoding or
// standard_conforming_strings to anything but a constant value that SET would
// be allowed to set (setConfigName).
func (c *checker) funcCall(fc *pg_query.FuncCall) {
	if len(fc.Funcname) == 0 {
		return
	}
	if !guardEqualFold(fc.Funcname[len(fc.Funcname)-1].GetString_().GetSval(), "set_config") {
		return
	}
	nameArg, valueArg := setConfigArgs(fc)
	name, ok := guardConstText(nameArg)
	if !ok {
		c.refuse("set_config_dynamic", "set_config with a setting name that is not a constant",
			"it could change the session's role or tenant")
		return
	}
	value, known := guardConstText(valueArg)
	c.setConfigName(name, value, known)
}

// setConfigArgs returns the setting_name and new_value arguments of a call of
// set_config, given by position or by name (nil when missing or not
// readable, e.g. a VARIADIC array).
func setConfigArgs(fc *pg_query.FuncCall) (name, value *pg_query.Node) {
	if fc.FuncVariadic {
		return nil, nil
	}
	for i, a := range fc.Args {
		na := a.GetNamedArgExpr()
		switch {
		case na == nil && i == 0:
			name = a
		case na == nil && i == 1:
			value = a
		case na != nil && guardEqualFold(na.Name, "setting_name"):
			name = na.Arg
		case na != nil && guardEqualFold(na.Name, "new_value"):
			value = na.Arg
		}
	}
	return name, value
}

// setConfigName refuses set_config of a protected setting name. The lexer's
// settings may be set to the values the proxy keeps them at anyway (drivers
// do so to be sure of them): standard_conforming_strings to a true value and
// client_encoding to an ASCII-safe encoding such as UTF8, the rules of SET.
// known is false when the value is not a constant, and such a call of them
// is refused.
func (c *checker) setConfigName(name, value string, known bool) {
	what := "set_config('" + name + "', ...)"
	switch {
	case guardEqualFold(name, "role"):
		c.refuse("set_config_role", what, whyRole)
	case guardEqualFold(name, "session_authorization"):
		c.refuse("set_config_session_authorization", what, whyRole)
	case guardHasPrefixFold(name, "stratum."):
		c.refuse("set_config_stratum", what, whyStratum)
	case guardEqualFold(name, "client_encoding"):
		switch {
		case !known:
			c.refuseCode(CodeFeatureNotSupported, "set_config_client_encoding", what+" with a value that is not a constant", whyUnknownValue)
		case unsafeClientEncoding(value):
			c.refuseCode(CodeFeatureNotSupported, "set_config_client_encoding",
				"set_config('"+name+"', '"+value+"', ...)", whyEncoding)
		}
	case guardEqualFold(name, "standard_conforming_strings"):
		switch {
		case !known:
			c.refuseCode(CodeFeatureNotSupported, "set_config_standard_conforming_strings",
				what+" with a value that is not a constant", whyUnknownValue)
		case !pgBoolTrue(value):
			c.refuseCode(CodeFeatureNotSupported, "set_config_standard_conforming_strings",
				"set_config('"+name+"', '"+value+"', ...)", whyStandardStrings)
		}
	}
}

// guardConstText returns the value of a string constant, looking through casts and
// COLLATE.
func guardConstText(n *pg_query.Node) (string, bool) {
	for n != nil {
		switch x := n.GetNode().(type) {
		case *pg_query.Node_AConst:
			if sv := x.AConst.GetSval(); sv != nil {
				return sv.Sval, true
			}
			return "", false
		case *pg_query.Node_TypeCast:
			n = x.TypeCast.Arg
		case *pg_query.Node_CollateClause:
			n = x.CollateClause.Arg
		default:
			return "", false
		}
	}
	return "", false
}

// setsBoolOn reports whether SET's value is a constant PostgreSQL reads as
// true (parse_bool: on, 1, and prefixes of true and yes).
func setsBoolOn(args []*pg_query.Node) bool {
	if len(args) != 1 {
		return false
	}
	if c := args[0].GetAConst(); c != nil && c.GetIval() != nil {
		return c.GetIval().Ival == 1
	}
	s, ok := guardConstText(args[0])
	return ok && pgBoolTrue(s)
}

// pgBoolTrue reports whether s is a value PostgreSQL's parse_bool reads as
// true: on, 1, or a prefix of true or yes, in any case.
func pgBoolTrue(s string) bool {
	switch guardLower(s) {
	case "on", "1", "t", "tr", "tru", "true", "y", "ye", "yes":
		return true
	}
	return false
}

// unsafeClientEncoding reports whether enc is a client-only encoding whose
// multi-byte characters may contain ASCII bytes such as a quote or backslash
// (PostgreSQL's SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC, GB18030, JOHAB and their
// aliases). Names are compared as PostgreSQL does: letters and digits only.
func unsafeClientEncoding(enc string) bool {
	b := make([]byte, 0, len(enc))
	for i := 0; i < len(enc); i++ {
		ch := enc[i]
		switch {
		case ch >= 'A' && ch <= 'Z':
			b = append(b, ch+'a'-'A')
		case ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9':
			b = append(b, ch)
		}
	}
	switch string(b) {
	case "sjis", "shiftjis", "mskanji", "win932", "windows932", "shiftjis2004",
		"big5", "win950", "windows950", "gbk", "win936", "windows936",
		"uhc", "win949", "windows949", "gb18030", "johab":
		return true
	}
	return false
}

// add folds one statement's class and refusal into a text's result: the text
// writes or is DDL if any statement is, is transaction control only if all
// are, and is refused for its first refused statement.
func (r *guardResult) add(cls guardClass, reason string) {
	r.class = guardClass{
		writes: r.class.writes || cls.writes,
		ddl:    r.class.ddl || cls.ddl,
		tx:     r.class.tx && cls.tx,
	}
	if r.reason == "" {
		r.reason = reason
	}
}

// UnsafeClientEncoding reports whether enc, in any spelling PostgreSQL
// accepts, is a client encoding in which a quote or backslash byte can be
// part of a multi-byte character. The proxy refuses such an encoding at
// connect with the same rule the guard applies to SET client_encoding.
func UnsafeClientEncoding(enc string) bool { return unsafeClientEncoding(enc) }
