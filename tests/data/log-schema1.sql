PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE episodes (
	id INTEGER NOT NULL, 
	run_id VARCHAR(36) NOT NULL, 
	number INTEGER NOT NULL, 
	bed VARCHAR(64) NOT NULL, 
	source VARCHAR NOT NULL, 
	start DATETIME NOT NULL, 
	"end" DATETIME, 
	label VARCHAR(32) NOT NULL, 
	probs JSON NOT NULL, 
	peak JSON NOT NULL, 
	windows INTEGER NOT NULL, 
	alerted BOOLEAN NOT NULL, 
	embedder_id VARCHAR NOT NULL, 
	head VARCHAR NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO episodes VALUES(1,'run-old',1,'bed-3','microphone ''old''','2026-11-27 08:00:02.000000','2026-11-27 08:00:06.000000','pain','{"not_cry": 0.2, "pain": 0.7}','{"not_cry": 0.4, "pain": 0.9}',3,1,'acoustic-v2','acoustic-v2');
CREATE TABLE service_events (
	id INTEGER NOT NULL, 
	run_id VARCHAR(36) NOT NULL, 
	bed VARCHAR(64) NOT NULL, 
	time DATETIME NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	detail JSON NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO service_events VALUES(1,'run-old','bed-3','2026-11-27 08:00:00.000000','service_started','{}');
INSERT INTO service_events VALUES(2,'run-old','bed-3','2026-11-27 08:00:10.000000','service_stopped','{}');
CREATE TABLE windows (
	id INTEGER NOT NULL, 
	run_id VARCHAR(36) NOT NULL, 
	bed VARCHAR(64) NOT NULL, 
	start DATETIME NOT NULL, 
	level_dbfs DOUBLE NOT NULL, 
	activity DOUBLE NOT NULL, 
	raw JSON NOT NULL, 
	smoothed JSON NOT NULL, 
	episode_id INTEGER, 
	PRIMARY KEY (id), 
	FOREIGN KEY(episode_id) REFERENCES episodes (id)
);
INSERT INTO windows VALUES(1,'run-old','bed-3','2026-11-27 08:00:02.000000',-20.0,0.59999999999999997779,'{"pain": 0.8}','{"pain": 0.7}',1);
CREATE TABLE alerts (
	id INTEGER NOT NULL, 
	run_id VARCHAR(36) NOT NULL, 
	bed VARCHAR(64) NOT NULL, 
	label VARCHAR(32) NOT NULL, 
	raised DATETIME NOT NULL, 
	cleared DATETIME, 
	probability DOUBLE NOT NULL, 
	episode_id INTEGER, 
	PRIMARY KEY (id), 
	FOREIGN KEY(episode_id) REFERENCES episodes (id)
);
INSERT INTO alerts VALUES(1,'run-old','bed-3','pain','2026-11-27 08:00:05.000000','2026-11-27 08:00:09.000000',0.81000000000000005329,1);
CREATE INDEX ix_episodes_bed ON episodes (bed);
CREATE INDEX ix_episodes_start ON episodes (start);
CREATE INDEX ix_episodes_run_id ON episodes (run_id);
CREATE INDEX ix_service_events_time ON service_events (time);
CREATE INDEX ix_service_events_run_id ON service_events (run_id);
CREATE INDEX ix_windows_run_id ON windows (run_id);
CREATE INDEX ix_windows_start ON windows (start);
CREATE INDEX ix_alerts_run_id ON alerts (run_id);
CREATE INDEX ix_alerts_raised ON alerts (raised);
COMMIT;
