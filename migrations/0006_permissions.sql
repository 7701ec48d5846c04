-- Permission delegation: a cascading revocation finds every policy for one
-- key in a subtree, and resolution reads one key's policies along a path.
CREATE INDEX permission_policies_key ON permission_policies (key, tenant_id);
