-- sqlite3 bulk insert and query, run as: sqlite3 DBFILE < sqlite_bulk.sql
-- Deterministic: rows come from a recursive CTE, no random().
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
DROP TABLE IF EXISTS item;
DROP TABLE IF EXISTS tag;
CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, price REAL, note TEXT);
CREATE TABLE tag (item INTEGER, tag TEXT);
BEGIN;
WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < 200000)
INSERT INTO item
SELECT x,
       printf('item-%08d-%s', (x * 7919) % 200000, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26, 1 + x % 7)),
       (x * 31) % 997,
       ((x * 104729) % 100000) / 100.0,
       printf('%.*c', 16 + x % 48, 'n')
FROM seq;
WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < 200000)
INSERT INTO tag SELECT (x * 13) % 200000 + 1, 't' || (x % 211) FROM seq;
COMMIT;
CREATE INDEX item_name ON item(name);
CREATE INDEX tag_tag ON tag(tag, item);
SELECT count(*), sum(length(name)), round(sum(price), 2) FROM item;
SELECT grp, count(*), round(avg(price), 3), max(name) FROM item GROUP BY grp ORDER BY grp LIMIT 5;
SELECT t.tag, count(*), round(sum(i.price), 2) FROM tag t JOIN item i ON i.id = t.item
GROUP BY t.tag ORDER BY count(*) DESC, t.tag LIMIT 5;
SELECT group_concat(name, ',') FROM (SELECT name FROM item WHERE name LIKE 'item-0001%' ORDER BY name LIMIT 20);
SELECT count(DISTINCT note), count(DISTINCT substr(name, 15)) FROM item;
