-- Run once by the postgres image on an empty data directory
-- (mounted into /docker-entrypoint-initdb.d). One database per service.
CREATE DATABASE identify OWNER crm;
CREATE DATABASE engage OWNER crm;
CREATE DATABASE network OWNER crm;
CREATE DATABASE value OWNER crm;
CREATE DATABASE lifecycle OWNER crm;
