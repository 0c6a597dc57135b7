-- The newest truncate fence of the marts: versions up to it belong to refreshes a truncate
-- overtook, and nothing they wrote is visible or counts (0: never truncated).
SELECT toString(max(fence)) FROM {database:Identifier}.truncations WHERE scope = 'marts';
