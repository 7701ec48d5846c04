package rewrite

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// This file classifies parsed statements for the sql.write and sql.ddl
// permissions. Where the guard cannot know what a statement does it says
// "writes" (CALL, EXECUTE, DO); function calls inside a query are the one
// place it cannot be conservative without refusing every SELECT, so a SELECT
// that calls a function that writes is classified as a read: PostgreSQL's
// grants on the tenant's role remain the enforcement for that case.

var (
	guardRead  = guardClass{}
	guardWrite = guardClass{writes: true}
	guardDDL   = guardClass{ddl: true}
	guardBoth  = guardClass{writes: true, ddl: true}
	guardTx    = guardClass{tx: true}
)

// guardClassify classifies one statement node.
func guardClassify(n *pg_query.Node) guardClass {
	switch s := n.GetNode().(type) {
	case nil:
		return guardRead

	// Queries: reads unless they hold a data-modifying statement (a WITH
	// clause) or an INTO clause (SELECT INTO creates and fills a table).
	case *pg_query.Node_SelectStmt:
		return guardQueryClass(n)
	case *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt,
		*pg_query.Node_DeleteStmt, *pg_query.Node_MergeStmt:
		return guardWrite
	case *pg_query.Node_CopyStmt:
		if s.CopyStmt.IsFrom {
			return guardWrite
		}
		if q := s.CopyStmt.Query; q != nil {
			// COPY (INSERT ... RETURNING ...) TO STDOUT writes.
			return guardQueryClass(q)
		}
		return guardRead
	case *pg_query.Node_ExplainStmt:
		if explainAnalyzes(s.ExplainStmt) {
			return guardClassify(s.ExplainStmt.Query)
		}
		return guardRead // plain EXPLAIN only plans
	case *pg_query.Node_PrepareStmt:
		return guardClassify(s.PrepareStmt.Query)
	case *pg_query.Node_DeclareCursorStmt:
		return guardClassify(s.DeclareCursorStmt.Query)
	case *pg_query.Node_ExecuteStmt:
		// The prepared statement is not in this text; it was checked when it
		// was prepared. Conservatively a write (PREPARE allows only DML and
		// SELECT, so never DDL).
		return guardWrite

	// Writes that are not DDL.
	case *pg_query.Node_TruncateStmt, *pg_query.Node_RefreshMatViewStmt,
		*pg_query.Node_LockStmt, *pg_query.Node_VacuumStmt,
		*pg_query.Node_ClusterStmt, *pg_query.Node_ReindexStmt,
		*pg_query.Node_CheckPointStmt:
		return guardWrite
	case *pg_query.Node_CallStmt:
		return guardWrite // a procedure may write (or run DDL: not knowable)

	// Both: a new table filled with rows, or code the guard cannot follow.
	case *pg_query.Node_CreateTableAsStmt, *pg_query.Node_DoStmt:
		return guardBoth

	case *pg_query.Node_TransactionStmt:
		return guardTx

	// Neither: session settings, cursors, notifications, plan caches.
	case *pg_query.Node_VariableSetStmt, *pg_query.Node_VariableShowStmt,
		*pg_query.Node_DiscardStmt, *pg_query.Node_ConstraintsSetStmt,
		*pg_query.Node_ListenStmt, *pg_query.Node_UnlistenStmt,
		*pg_query.Node_NotifyStmt, *pg_query.Node_DeallocateStmt,
		*pg_query.Node_FetchStmt, *pg_query.Node_ClosePortalStmt,
		*pg_query.Node_LoadStmt:
		return guardRead

	// Schema and privileges.
	case *pg_query.Node_CreateStmt, *pg_query.Node_CreateSchemaStmt,
		*pg_query.Node_AlterTableStmt, *pg_query.Node_AlterTableMoveAllStmt,
		*pg_query.Node_ReplicaIdentityStmt, *pg_query.Node_AlterCollationStmt,
		*pg_query.Node_AlterDomainStmt, *pg_query.Node_CreateDomainStmt,
		*pg_query.Node_GrantStmt, *pg_query.Node_GrantRoleStmt,
		*pg_query.Node_AlterDefaultPrivilegesStmt,
		*pg_query.Node_CreateTableSpaceStmt, *pg_query.Node_DropTableSpaceStmt,
		*pg_query.Node_AlterTableSpaceOptionsStmt,
		*pg_query.Node_CreateExtensionStmt, *pg_query.Node_AlterExtensionStmt,
		*pg_query.Node_AlterExtensionContentsStmt,
		*pg_query.Node_CreateFdwStmt, *pg_query.Node_AlterFdwStmt,
		*pg_query.Node_CreateForeignServerStmt, *pg_query.Node_AlterForeignServerStmt,
		*pg_query.Node_CreateForeignTableStmt, *pg_query.Node_ImportForeignSchemaStmt,
		*pg_query.Node_CreateUserMappingStmt, *pg_query.Node_AlterUserMappingStmt,
		*pg_query.Node_DropUserMappingStmt,
		*pg_query.Node_CreatePolicyStmt, *pg_query.Node_AlterPolicyStmt,
		*pg_query.Node_CreateAmStmt, *pg_query.Node_CreateTrigStmt,
		*pg_query.Node_CreateEventTrigStmt, *pg_query.Node_AlterEventTrigStmt,
		*pg_query.Node_CreatePlangStmt,
		*pg_query.Node_CreateRoleStmt, *pg_query.Node_AlterRoleStmt,
		*pg_query.Node_AlterRoleSetStmt, *pg_query.Node_DropRoleStmt,
		*pg_query.Node_CreateSeqStmt, *pg_query.Node_AlterSeqStmt,
		*pg_query.Node_DefineStmt, *pg_query.Node_CreateOpClassStmt,
		*pg_query.Node_CreateOpFamilyStmt, *pg_query.Node_AlterOpFamilyStmt,
		*pg_query.Node_DropStmt, *pg_query.Node_CommentStmt, *pg_query.Node_SecLabelStmt,
		*pg_query.Node_IndexStmt, *pg_query.Node_CreateStatsStmt, *pg_query.Node_AlterStatsStmt,
		*pg_query.Node_CreateFunctionStmt, *pg_query.Node_AlterFunctionStmt,
		*pg_query.Node_RenameStmt, *pg_query.Node_AlterObjectDependsStmt,
		*pg_query.Node_AlterObjectSchemaStmt, *pg_query.Node_AlterOwnerStmt,
		*pg_query.Node_AlterOperatorStmt, *pg_query.Node_AlterTypeStmt,
		*pg_query.Node_RuleStmt, *pg_query.Node_CompositeTypeStmt,
		*pg_query.Node_CreateEnumStmt, *pg_query.Node_CreateRangeStmt,
		*pg_query.Node_AlterEnumStmt, *pg_query.Node_ViewStmt,
		*pg_query.Node_CreatedbStmt, *pg_query.Node_AlterDatabaseStmt,
		*pg_query.Node_AlterDatabaseRefreshCollStmt, *pg_query.Node_AlterDatabaseSetStmt,
		*pg_query.Node_DropdbStmt, *pg_query.Node_AlterSystemStmt,
		*pg_query.Node_CreateConversionStmt, *pg_query.Node_CreateCastStmt,
		*pg_query.Node_CreateTransformStmt,
		*pg_query.Node_DropOwnedStmt, *pg_query.Node_ReassignOwnedStmt,
		*pg_query.Node_AlterTsdictionaryStmt, *pg_query.Node_AlterTsconfigurationStmt,
		*pg_query.Node_CreatePublicationStmt, *pg_query.Node_AlterPublicationStmt,
		*pg_query.Node_CreateSubscriptionStmt, *pg_query.Node_AlterSubscriptionStmt,
		*pg_query.Node_DropSubscriptionStmt:
		return guardDDL
	}
	// A statement kind this list does not know (a newer parser): assume the
	// worst.
	return guardBoth
}

// guardQueryClass classifies a query by what it contains: an INSERT, UPDATE,
// DELETE or MERGE anywhere (data-modifying WITH) makes it a write, an INTO
// clause (SELECT INTO) a write and DDL.
func guardQueryClass(n *pg_query.Node) guardClass {
	var cls guardClass
	var visit func(m protoreflect.Message)
	visit = func(m protoreflect.Message) {
		if !m.IsValid() {
			return
		}
		switch m.Interface().(type) {
		case *pg_query.InsertStmt, *pg_query.UpdateStmt, *pg_query.DeleteStmt, *pg_query.MergeStmt:
			cls.writes = true
		case *pg_query.IntoClause:
			cls.writes, cls.ddl = true, true
		case *pg_query.A_Const:
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if fd.IsMap() || (fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind) {
				return true
			}
			if fd.IsList() {
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					visit(l.Get(i).Message())
				}
			} else {
				visit(v.Message())
			}
			return !(cls.writes && cls.ddl)
		})
	}
	visit(n.ProtoReflect())
	return cls
}

// explainAnalyzes reports whether EXPLAIN runs its statement (ANALYZE, in
// either syntax, not turned off).
func explainAnalyzes(e *pg_query.ExplainStmt) bool {
	analyze := false
	for _, o := range e.Options {
		d := o.GetDefElem()
		if d == nil || !guardEqualFold(d.Defname, "analyze") {
			continue
		}
		analyze = defElemTrue(d.Arg)
	}
	return analyze
}

// defElemTrue reads an option's boolean value as PostgreSQL's defGetBoolean
// does; no value means true, and anything unreadable counts as true.
func defElemTrue(arg *pg_query.Node) bool {
	switch x := arg.GetNode().(type) {
	case nil:
		return true
	case *pg_query.Node_Integer:
		return x.Integer.Ival != 0
	case *pg_query.Node_Boolean:
		return x.Boolean.Boolval
	case *pg_query.Node_String_:
		switch guardLower(x.String_.Sval) {
		case "false", "off", "0":
			return false
		}
	}
	return true
}
