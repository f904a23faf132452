"""Nexmark on Apache Flink and on riffle, side by side, over the same events.jsonl.

Flink runs nexmark-flink's queries (queries/q*.sql of github.com/nexmark/nexmark) in its SQL
engine on a local mini-cluster: the events file is a filesystem/json table with the watermark
dateTime - 4 s, and the person, auction and bid views select its rows by event_type (as
nexmark-flink's ddl_views.sql does over its generator). Results go to blackhole tables, as in
nexmark-flink. riffle runs `riffle nexmark run --input events.jsonl --sink blackhole://` on the
same file with as many workers as Flink's parallelism.

Both read and parse the same JSON lines, so both figures include parsing. Each is timed as the
whole job: riffle as its whole process, Flink from job submission to its end (the mini-cluster,
started once before the first query, is not counted). Run through bench/nexmark-flink.sh, which
installs PyFlink and builds riffle.
"""

import argparse
import os
import subprocess
import sys
import time

QUERIES = {
    "q0": """
INSERT INTO nexmark_q0
SELECT auction, bidder, price, dateTime, extra FROM bid""",
    "q1": """
INSERT INTO nexmark_q1
SELECT auction, bidder, 0.908 * price as price, dateTime, extra FROM bid""",
    "q2": """
INSERT INTO nexmark_q2
SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0""",
    "q3": """
INSERT INTO nexmark_q3
SELECT P.name, P.city, P.state, A.id
FROM auction AS A INNER JOIN person AS P on A.seller = P.id
WHERE A.category = 10 and (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')""",
    "q4": """
INSERT INTO nexmark_q4
SELECT Q.category, AVG(Q.final)
FROM (
    SELECT MAX(B.price) AS final, A.category
    FROM auction A, bid B
    WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires
    GROUP BY A.id, A.category
) Q
GROUP BY Q.category""",
    "q5": """
INSERT INTO nexmark_q5
SELECT AuctionBids.auction, AuctionBids.num
 FROM (
   SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
   FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
   GROUP BY auction, window_start, window_end
 ) AS AuctionBids
 JOIN (
   SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
   FROM (
     SELECT count(*) AS num, window_start AS starttime, window_end AS endtime
     FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
     GROUP BY auction, window_start, window_end
   ) AS CountBids
   GROUP BY CountBids.starttime, CountBids.endtime
 ) AS MaxBids
 ON AuctionBids.starttime = MaxBids.starttime AND
    AuctionBids.endtime = MaxBids.endtime AND
    AuctionBids.num >= MaxBids.maxn""",
    "q7": """
INSERT INTO nexmark_q7
SELECT B.auction, B.price, B.bidder, B.dateTime, B.extra
from bid B
JOIN (
  SELECT MAX(price) AS maxprice, window_end as dateTime
  FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
  GROUP BY window_start, window_end
) B1
ON B.price = B1.maxprice
WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '10' SECOND AND B1.dateTime""",
    "q8": """
INSERT INTO nexmark_q8
SELECT P.id, P.name, P.starttime
FROM (
  SELECT id, name, window_start AS starttime, window_end AS endtime
  FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
  GROUP BY id, name, window_start, window_end
) P
JOIN (
  SELECT seller, window_start AS starttime, window_end AS endtime
  FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
  GROUP BY seller, window_start, window_end
) A
ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime""",
    "q11": """
INSERT INTO nexmark_q11
SELECT B.bidder, count(*) as bid_count,
    SESSION_START(B.dateTime, INTERVAL '10' SECOND) as starttime,
    SESSION_END(B.dateTime, INTERVAL '10' SECOND) as endtime
FROM bid B
GROUP BY B.bidder, SESSION(B.dateTime, INTERVAL '10' SECOND)""",
}

SINKS = {
    "q0": "auction BIGINT, bidder BIGINT, price BIGINT, dateTime TIMESTAMP(3), extra VARCHAR",
    "q1": "auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), dateTime TIMESTAMP(3), extra VARCHAR",
    "q2": "auction BIGINT, price BIGINT",
    "q3": "name VARCHAR, city VARCHAR, state VARCHAR, id BIGINT",
    "q4": "id BIGINT, final BIGINT",
    "q5": "auction BIGINT, num BIGINT",
    "q7": "auction BIGINT, bidder BIGINT, price BIGINT, dateTime TIMESTAMP(3), extra VARCHAR",
    "q8": "id BIGINT, name VARCHAR, stime TIMESTAMP(3)",
    "q11": "bidder BIGINT, bid_count BIGINT, starttime TIMESTAMP(3), endtime TIMESTAMP(3)",
}

DDL = """
CREATE TABLE events (
  event_type STRING,
  id BIGINT, name STRING, email_address STRING, credit_card STRING, city STRING, state STRING,
  item_name STRING, description STRING, initial_bid BIGINT, reserve BIGINT, expires BIGINT,
  seller BIGINT, category BIGINT,
  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
  date_time BIGINT, extra STRING,
  dateTime AS TO_TIMESTAMP(FROM_UNIXTIME(date_time / 1000)) + (date_time % 1000) * INTERVAL '0.001' SECOND,
  WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json')
"""

VIEWS = [
    """CREATE VIEW person AS SELECT id, name, email_address AS emailAddress,
         credit_card AS creditCard, city, state, dateTime, extra
       FROM events WHERE event_type = 'person'""",
    """CREATE VIEW auction AS SELECT id, item_name AS itemName, description,
         initial_bid AS initialBid, reserve, dateTime,
         TO_TIMESTAMP(FROM_UNIXTIME(expires / 1000)) + (expires % 1000) * INTERVAL '0.001' SECOND AS expires,
         seller, category, extra
       FROM events WHERE event_type = 'auction'""",
    """CREATE VIEW bid AS SELECT auction, bidder, price, channel, url, dateTime, extra
       FROM events WHERE event_type = 'bid'""",
]


def quoted(sql):
    """`dateTime` is a reserved word in Flink SQL: quoted everywhere, as nexmark-flink does."""
    return sql.replace("dateTime", "`dateTime`")


def flink_run(t_env, query):
    """Runs one INSERT to its blackhole table; seconds from submission to the job's end."""
    start = time.monotonic()
    result = t_env.execute_sql(quoted(QUERIES[query]))
    result.wait()
    return time.monotonic() - start


# riffle's column names for the columns of each query's SELECT, in order.
COLUMNS = {
    "q0": ["auction", "bidder", "price", "dateTime", "extra"],
    "q1": ["auction", "bidder", "price", "dateTime", "extra"],
    "q2": ["auction", "price"],
    "q3": ["name", "city", "state", "id"],
    "q4": ["id", "final"],
    "q5": ["auction", "num"],
    "q7": ["auction", "price", "bidder", "dateTime", "extra"],
    "q8": ["id", "name", "stime"],
    "q11": ["bidder", "bid_count", "starttime", "endtime"],
}


def canonical(value):
    """A value as riffle writes it: times as unix milliseconds, decimals to 3 places."""
    import datetime
    import decimal
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return round(value.timestamp() * 1000)
    if isinstance(value, (decimal.Decimal, float)):
        return str(decimal.Decimal(str(value)).quantize(decimal.Decimal("0.001")))
    return value


def flink_rows(t_env, query):
    """The final result of the query's SELECT in Flink: its changelog applied."""
    from collections import Counter
    from pyflink.common import RowKind
    select = quoted(QUERIES[query].strip().split("\n", 1)[1])
    rows = Counter()
    with t_env.execute_sql(select).collect() as results:
        for row in results:
            key = tuple(canonical(v) for v in row)
            if row.get_row_kind() in (RowKind.INSERT, RowKind.UPDATE_AFTER):
                rows[key] += 1
            else:
                rows[key] -= 1
    return sorted(k for k, n in rows.items() for _ in range(n))


def riffle_rows(riffle, query, events_file, workers):
    import json
    out = subprocess.run(
        [riffle, "nexmark", "run", "--query", query, "--input", events_file,
         "--workers", str(workers)],
        capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    if query == "q4":  # updating: the last row of each category
        rows = list({r["id"]: r for r in rows}.values())
    return sorted(tuple(canonical_json(query, c, r[c]) for c in COLUMNS[query]) for r in rows)


def canonical_json(query, column, value):
    import decimal
    if query == "q1" and column == "price":
        return str(decimal.Decimal(str(value)).quantize(decimal.Decimal("0.001")))
    return value


def check(t_env, args, queries):
    """Every query's rows from riffle equal Flink's; exits non-zero otherwise."""
    failed = []
    for query in queries:
        want = flink_rows(t_env, query)
        got = riffle_rows(args.riffle, query, args.events_file, args.parallelism)
        same = got == want
        print(f"{query:<4} flink {len(want):>7} rows, riffle {len(got):>7} rows: "
              f"{'equal' if same else 'DIFFERENT'}", flush=True)
        if not same:
            failed.append(query)
            missing = [r for r in want if r not in set(got)][:3]
            extra = [r for r in got if r not in set(want)][:3]
            print(f"     only in Flink: {missing}\n     only in riffle: {extra}", flush=True)
    return 1 if failed else 0


def riffle_run(riffle, query, events_file, workers):
    start = time.monotonic()
    out = subprocess.run(
        [riffle, "nexmark", "run", "--query", query, "--input", events_file,
         "--workers", str(workers), "--sink", "blackhole://"],
        capture_output=True, text=True, check=True)
    elapsed = time.monotonic() - start
    return elapsed, out.stderr.strip().splitlines()[-1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events-file", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--queries", default="q0,q1,q2,q3,q4,q5,q7,q8,q11")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--riffle", required=True)
    parser.add_argument("--check", action="store_true",
                        help="compare the rows of riffle and Flink instead of timing them")
    args = parser.parse_args()

    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    conf.set("parallelism.default", str(args.parallelism))
    conf.set("table.local-time-zone", "UTC")
    conf.set("pipeline.object-reuse", "true")
    t_env.execute_sql(quoted(DDL.format(path=os.path.abspath(args.events_file))))
    for view in VIEWS:
        t_env.execute_sql(quoted(view))
    for query, columns in SINKS.items():
        t_env.execute_sql(
            quoted(f"CREATE TABLE nexmark_{query} ({columns}) WITH ('connector' = 'blackhole')"))

    queries = [q.strip() for q in args.queries.split(",") if q.strip()]
    if args.check:
        return check(t_env, args, queries)
    # A first job warms the mini-cluster (class loading, JIT) and is not reported.
    flink_run(t_env, "q2")
    print(f"# {args.events} events, parallelism / workers {args.parallelism}; "
          "seconds per whole job, events/s = events / seconds")
    print(f"{'query':<6}{'riffle s':>10}{'riffle ev/s':>14}{'flink s':>10}"
          f"{'flink ev/s':>14}{'riffle/flink':>14}")
    for query in queries:
        r_secs, summary = riffle_run(args.riffle, query, args.events_file, args.parallelism)
        f_secs = flink_run(t_env, query)
        print(f"{query:<6}{r_secs:>10.2f}{args.events / r_secs:>14.0f}{f_secs:>10.2f}"
              f"{args.events / f_secs:>14.0f}{f_secs / r_secs:>14.1f}", flush=True)
        print(f"#   {summary}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
