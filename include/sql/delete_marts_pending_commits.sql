-- Take the commits a refresh applied (its claimed snapshot) out of the queue, once they are
-- in the watermark. Commits queued since stay for the next refresh.
DELETE FROM {database:Identifier}.marts_pending_commits
WHERE load_id IN (SELECT load_id FROM {database:Identifier}.{claimed:Identifier})
SETTINGS lightweight_delete_mode = 'lightweight_update';
