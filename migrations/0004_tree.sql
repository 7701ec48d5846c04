-- The tenant tree's listings page by keyset: the whole list and descendants by
-- path, children by (slug, id) under their parent. The GiST index on path
-- answers ancestor and descendant tests but cannot give path order.
CREATE INDEX tenants_path_order ON tenants (path);
CREATE INDEX tenants_parent_slug ON tenants (parent_id, slug, id);
