-- lite-csms SQLite schema, version 5 (PRAGMA user_version).
-- Generated from lite_csms/db/models.py by `python -m lite_csms.db.dump_schema`.
-- The server creates these itself; this file is for reading, reviewing and other tools.
-- Times are ISO 8601 text in UTC with milliseconds; booleans are 0/1.

CREATE TABLE "api_key" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "name" VARCHAR(64) NOT NULL,
    "key_hash" VARCHAR(64) NOT NULL,
    "created_at" TEXT NOT NULL,
    "revoked_at" TEXT,
    "last_used_at" TEXT
);

CREATE TABLE "charging_profile" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "evse_id" INTEGER NOT NULL,
    "profile_id" INTEGER NOT NULL,
    "purpose" VARCHAR(40) NOT NULL,
    "stack_level" INTEGER NOT NULL,
    "transaction_id" VARCHAR(36),
    "profile" TEXT NOT NULL,
    "set_at" TEXT NOT NULL,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE
);

CREATE TABLE "command" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "action" VARCHAR(48) NOT NULL,
    "payload" TEXT NOT NULL,
    "requested_by" VARCHAR(64) NOT NULL,
    "status" VARCHAR(16) NOT NULL,
    "created_at" TEXT NOT NULL,
    "expires_at" TEXT,
    "sent_at" TEXT,
    "finished_at" TEXT,
    "result" TEXT,
    "error_code" VARCHAR(48),
    "error_description" TEXT,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE
);

CREATE TABLE "composite_schedule" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "evse_id" INTEGER NOT NULL,
    "status" VARCHAR(16) NOT NULL,
    "schedule" TEXT,
    "asked_at" TEXT NOT NULL,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE
);

CREATE TABLE "connector" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "evse_id" INTEGER NOT NULL,
    "connector_id" INTEGER NOT NULL,
    "status" VARCHAR(32) NOT NULL,
    "error_code" VARCHAR(64),
    "info" TEXT,
    "status_at" TEXT NOT NULL,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE
);

CREATE TABLE "connector_status_change" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "connector_id" INTEGER NOT NULL,
    "status" VARCHAR(32) NOT NULL,
    "error_code" VARCHAR(64),
    "info" TEXT,
    "timestamp" TEXT NOT NULL,
    "received_at" TEXT NOT NULL,
    FOREIGN KEY ("connector_id") REFERENCES "connector" ("id") ON DELETE CASCADE
);

CREATE TABLE "device_report" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "request_id" INTEGER NOT NULL,
    "kind" VARCHAR(32) NOT NULL,
    "status" VARCHAR(32) NOT NULL,
    "parts_received" INTEGER NOT NULL,
    "requested_at" TEXT NOT NULL,
    "complete_at" TEXT,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE
);

CREATE TABLE "device_report_part" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "report_id" INTEGER NOT NULL,
    "seq_no" INTEGER NOT NULL,
    FOREIGN KEY ("report_id") REFERENCES "device_report" ("id") ON DELETE CASCADE
);

CREATE TABLE "device_variable" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "component" VARCHAR(50) NOT NULL,
    "component_instance" VARCHAR(50) NOT NULL,
    "evse_id" INTEGER NOT NULL,
    "connector_id" INTEGER NOT NULL,
    "variable" VARCHAR(50) NOT NULL,
    "variable_instance" VARCHAR(50) NOT NULL,
    "attribute_type" VARCHAR(8) NOT NULL,
    "value" TEXT,
    "mutability" VARCHAR(16),
    "data_type" VARCHAR(16),
    "unit" VARCHAR(16),
    "min_limit" REAL,
    "max_limit" REAL,
    "values_list" TEXT,
    "report_id" INTEGER,
    "updated_at" TEXT NOT NULL,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE,
    FOREIGN KEY ("report_id") REFERENCES "device_report" ("id") ON DELETE SET NULL
);

CREATE TABLE "driver" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "name" TEXT,
    "phone" VARCHAR(16),
    "email" VARCHAR(254),
    "password_hash" TEXT,
    "created_at" TEXT NOT NULL,
    "disabled" INTEGER NOT NULL,
    "session_epoch" INTEGER NOT NULL
);

CREATE TABLE "energy_reading" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "transaction_id" INTEGER NOT NULL,
    "timestamp" TEXT NOT NULL,
    "value_wh" REAL NOT NULL,
    "context" VARCHAR(32) NOT NULL,
    "source" VARCHAR(24) NOT NULL,
    "seq_no" INTEGER NOT NULL,
    FOREIGN KEY ("transaction_id") REFERENCES "transaction" ("id") ON DELETE CASCADE
);

CREATE TABLE "id_token" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "token" VARCHAR(255) NOT NULL,
    "token_type" VARCHAR(32) NOT NULL,
    "status" VARCHAR(16) NOT NULL,
    "expires_at" TEXT,
    "group_token" VARCHAR(255),
    "created_at" TEXT NOT NULL,
    "updated_at" TEXT NOT NULL,
    "token_key" VARCHAR(255),
    "driver_id" INTEGER,
    FOREIGN KEY ("driver_id") REFERENCES "driver" ("id") ON DELETE SET NULL
);

CREATE TABLE "local_list_state" (
    "station_id" VARCHAR(48) NOT NULL PRIMARY KEY,
    "version" INTEGER NOT NULL,
    "sent_at" TEXT,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE
);

CREATE TABLE "maintenance_request" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "kind" VARCHAR(16) NOT NULL,
    "request_id" INTEGER,
    "command_id" INTEGER,
    "location" TEXT NOT NULL,
    "status" VARCHAR(32) NOT NULL,
    "file_name" TEXT,
    "open" INTEGER NOT NULL,
    "requested_at" TEXT NOT NULL,
    "status_at" TEXT NOT NULL,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE,
    FOREIGN KEY ("command_id") REFERENCES "command" ("id") ON DELETE SET NULL
);

CREATE TABLE "maintenance_status" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "request_id" INTEGER NOT NULL,
    "status" VARCHAR(32) NOT NULL,
    "received_at" TEXT NOT NULL,
    FOREIGN KEY ("request_id") REFERENCES "maintenance_request" ("id") ON DELETE CASCADE
);

CREATE TABLE "meter_sample" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "transaction_id" INTEGER,
    "evse_id" INTEGER NOT NULL,
    "timestamp" TEXT NOT NULL,
    "measurand" VARCHAR(48) NOT NULL,
    "unit" VARCHAR(16),
    "phase" VARCHAR(8) NOT NULL,
    "location" VARCHAR(8) NOT NULL,
    "context" VARCHAR(32) NOT NULL,
    "value" REAL NOT NULL,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE,
    FOREIGN KEY ("transaction_id") REFERENCES "transaction" ("id") ON DELETE SET NULL
);

CREATE TABLE "one_time_code" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "phone" VARCHAR(16) NOT NULL,
    "code_hash" VARCHAR(128) NOT NULL,
    "created_at" TEXT NOT NULL,
    "expires_at" TEXT NOT NULL,
    "attempts" INTEGER NOT NULL,
    "used_at" TEXT
);

CREATE TABLE "operator_setting" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "key" VARCHAR(160) NOT NULL,
    "value" TEXT NOT NULL,
    "requested_by" TEXT,
    "at" TEXT NOT NULL,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE
);

CREATE TABLE "owner" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "name" TEXT NOT NULL,
    "email" VARCHAR(254),
    "phone" VARCHAR(16),
    "password_hash" TEXT,
    "created_at" TEXT NOT NULL,
    "disabled" INTEGER NOT NULL,
    "session_epoch" INTEGER NOT NULL
);

CREATE TABLE "policy_change" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "at" TEXT NOT NULL,
    "from_level" VARCHAR(16) NOT NULL,
    "to_level" VARCHAR(16) NOT NULL,
    "reason" TEXT NOT NULL,
    "settings" TEXT NOT NULL,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE
);

CREATE TABLE "reservation" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "evse_id" INTEGER NOT NULL,
    "id_token" VARCHAR(255) NOT NULL,
    "expires_at" TEXT NOT NULL,
    "status" VARCHAR(16) NOT NULL,
    "transaction_id" INTEGER,
    "created_at" TEXT NOT NULL,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE,
    FOREIGN KEY ("transaction_id") REFERENCES "transaction" ("id") ON DELETE SET NULL
);

CREATE TABLE "server_setting" (
    "key" VARCHAR(64) NOT NULL PRIMARY KEY,
    "value" TEXT NOT NULL,
    "updated_at" TEXT NOT NULL
);

CREATE TABLE "setting_refusal" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "key" VARCHAR(160) NOT NULL,
    "value" TEXT NOT NULL,
    "status" VARCHAR(40) NOT NULL,
    "firmware_version" TEXT,
    "at" TEXT NOT NULL,
    "requested_by" TEXT,
    "scope" VARCHAR(8) NOT NULL,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE
);

CREATE TABLE "station" (
    "id" VARCHAR(48) NOT NULL PRIMARY KEY,
    "password_hash" TEXT,
    "registration" VARCHAR(16) NOT NULL,
    "vendor" TEXT,
    "model" TEXT,
    "serial_number" TEXT,
    "firmware_version" TEXT,
    "iccid" TEXT,
    "imsi" TEXT,
    "protocol" VARCHAR(16),
    "online" INTEGER NOT NULL,
    "last_boot_at" TEXT,
    "last_seen_at" TEXT,
    "created_at" TEXT NOT NULL,
    "firmware_changed_at" TEXT,
    "previous_firmware_version" TEXT,
    "security_profile" INTEGER,
    "previous_password_hash" TEXT,
    "pending_password_hash" TEXT,
    "owner_id" INTEGER,
    FOREIGN KEY ("owner_id") REFERENCES "owner" ("id") ON DELETE SET NULL
);

CREATE TABLE "station_budget" (
    "station_id" VARCHAR(48) NOT NULL PRIMARY KEY,
    "cap_bytes" INTEGER,
    "cycle_day" INTEGER,
    "warn_ratio" REAL,
    "nat_timeout" INTEGER,
    "policy_enabled" INTEGER,
    "level" VARCHAR(16) NOT NULL,
    "level_cycle_start" TEXT,
    "updated_at" TEXT NOT NULL,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE
);

CREATE TABLE "station_deviation" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "action" VARCHAR(64) NOT NULL,
    "kind" VARCHAR(32) NOT NULL,
    "path" TEXT NOT NULL,
    "count" INTEGER NOT NULL,
    "first_at" TEXT NOT NULL,
    "last_at" TEXT NOT NULL,
    "example" TEXT,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE
);

CREATE TABLE "station_event" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "action" VARCHAR(48) NOT NULL,
    "timestamp" TEXT,
    "payload" TEXT NOT NULL,
    "received_at" TEXT NOT NULL,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE
);

CREATE TABLE "station_setting" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "key" VARCHAR(160) NOT NULL,
    "value" TEXT,
    "readonly" INTEGER NOT NULL,
    "updated_at" TEXT NOT NULL,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE
);

CREATE TABLE "tariff" (
    "station_id" VARCHAR(48) NOT NULL PRIMARY KEY,
    "currency" VARCHAR(3) NOT NULL,
    "per_kwh" INTEGER NOT NULL,
    "per_hour" INTEGER NOT NULL,
    "session_fee" INTEGER NOT NULL,
    "updated_at" TEXT NOT NULL,
    "updated_by" TEXT,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE
);

CREATE TABLE "traffic_connection" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "opened_at" TEXT NOT NULL,
    "closed_at" TEXT NOT NULL,
    "protocol" VARCHAR(16) NOT NULL,
    "tls" INTEGER NOT NULL,
    "tls_resumed" INTEGER NOT NULL,
    "tcp_setup_bytes" INTEGER NOT NULL,
    "tls_setup_bytes" INTEGER NOT NULL,
    "http_setup_bytes" INTEGER NOT NULL,
    "ip_bytes_in" INTEGER NOT NULL,
    "ip_bytes_out" INTEGER NOT NULL,
    "payload_bytes_in" INTEGER NOT NULL,
    "payload_bytes_out" INTEGER NOT NULL,
    "retransmitted_bytes" INTEGER NOT NULL,
    "close_reason" TEXT,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE
);

CREATE TABLE "traffic_counter" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "period" VARCHAR(4) NOT NULL,
    "period_start" TEXT NOT NULL,
    "action" VARCHAR(64) NOT NULL,
    "direction" VARCHAR(3) NOT NULL,
    "layer" VARCHAR(8) NOT NULL,
    "bytes" INTEGER NOT NULL,
    "messages" INTEGER NOT NULL,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE
);

CREATE TABLE "traffic_flush" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "flushed_at" TEXT NOT NULL,
    "interval_s" REAL
);

CREATE TABLE "transaction" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "station_id" VARCHAR(48) NOT NULL,
    "station_tx_id" VARCHAR(36),
    "evse_id" INTEGER NOT NULL,
    "connector_id" INTEGER NOT NULL,
    "id_token" VARCHAR(255),
    "auth_status" VARCHAR(16),
    "reservation_id" INTEGER,
    "started_at" TEXT NOT NULL,
    "stopped_at" TEXT,
    "meter_start_wh" REAL,
    "meter_stop_wh" REAL,
    "meter_last_wh" REAL,
    "stop_reason" VARCHAR(32),
    "offline" INTEGER NOT NULL,
    "last_seq_no" INTEGER,
    "seq_no_gaps" INTEGER NOT NULL,
    "created_at" TEXT NOT NULL,
    "energy_wh" REAL,
    "reconstructed" INTEGER NOT NULL,
    "review" VARCHAR(64),
    "review_reason" TEXT,
    "review_note" TEXT,
    "generation" INTEGER NOT NULL,
    "price_at" TEXT,
    "price_currency" VARCHAR(3),
    "price_per_kwh" INTEGER,
    "price_per_hour" INTEGER,
    "price_fee" INTEGER,
    "cost" INTEGER,
    "owner_id" INTEGER,
    "driver_id" INTEGER,
    FOREIGN KEY ("station_id") REFERENCES "station" ("id") ON DELETE CASCADE
);

CREATE TABLE "transaction_event_record" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "transaction_id" INTEGER NOT NULL,
    "seq_no" INTEGER NOT NULL,
    "event_type" VARCHAR(16) NOT NULL,
    "trigger_reason" VARCHAR(40) NOT NULL,
    "timestamp" TEXT NOT NULL,
    "offline" INTEGER NOT NULL,
    FOREIGN KEY ("transaction_id") REFERENCES "transaction" ("id") ON DELETE CASCADE
);

CREATE UNIQUE INDEX "api_key_key_hash" ON "api_key" ("key_hash");

CREATE UNIQUE INDEX "api_key_name" ON "api_key" ("name");

CREATE INDEX "charging_profile_station_id" ON "charging_profile" ("station_id");

CREATE UNIQUE INDEX "charging_profile_station_id_profile_id" ON "charging_profile" ("station_id", "profile_id");

CREATE INDEX "command_station_id" ON "command" ("station_id");

CREATE INDEX "command_station_id_status_created_at" ON "command" ("station_id", "status", "created_at");

CREATE INDEX "composite_schedule_station_id" ON "composite_schedule" ("station_id");

CREATE UNIQUE INDEX "composite_schedule_station_id_evse_id" ON "composite_schedule" ("station_id", "evse_id");

CREATE INDEX "connector_station_id" ON "connector" ("station_id");

CREATE UNIQUE INDEX "connector_station_id_evse_id_connector_id" ON "connector" ("station_id", "evse_id", "connector_id");

CREATE INDEX "connector_status_change_connector_id" ON "connector_status_change" ("connector_id");

CREATE INDEX "connector_status_change_connector_id_timestamp" ON "connector_status_change" ("connector_id", "timestamp");

CREATE INDEX "device_report_part_report_id" ON "device_report_part" ("report_id");

CREATE UNIQUE INDEX "device_report_part_report_id_seq_no" ON "device_report_part" ("report_id", "seq_no");

CREATE INDEX "device_report_station_id" ON "device_report" ("station_id");

CREATE UNIQUE INDEX "device_report_station_id_request_id" ON "device_report" ("station_id", "request_id");

CREATE INDEX "device_variable_report_id" ON "device_variable" ("report_id");

CREATE INDEX "device_variable_station_id" ON "device_variable" ("station_id");

CREATE UNIQUE INDEX "device_variable_station_id_component_component_instance__941af7a" ON "device_variable" ("station_id", "component", "component_instance", "evse_id", "connector_id", "variable", "variable_instance", "attribute_type");

CREATE UNIQUE INDEX "driver_email" ON "driver" ("email");

CREATE UNIQUE INDEX "driver_phone" ON "driver" ("phone");

CREATE INDEX "energy_reading_transaction_id" ON "energy_reading" ("transaction_id");

CREATE UNIQUE INDEX "energy_reading_transaction_id_timestamp_context_source_s_cc6d233" ON "energy_reading" ("transaction_id", "timestamp", "context", "source", "seq_no", "value_wh");

CREATE INDEX "id_token_driver_id" ON "id_token" ("driver_id");

CREATE UNIQUE INDEX "id_token_token" ON "id_token" ("token");

CREATE UNIQUE INDEX "id_token_token_key" ON "id_token" ("token_key");

CREATE INDEX "maintenance_request_command_id" ON "maintenance_request" ("command_id");

CREATE INDEX "maintenance_request_station_id" ON "maintenance_request" ("station_id");

CREATE INDEX "maintenance_request_station_id_kind_open_requested_at" ON "maintenance_request" ("station_id", "kind", "open", "requested_at");

CREATE INDEX "maintenance_request_station_id_kind_request_id" ON "maintenance_request" ("station_id", "kind", "request_id");

CREATE INDEX "maintenance_status_request_id" ON "maintenance_status" ("request_id");

CREATE INDEX "meter_sample_station_id" ON "meter_sample" ("station_id");

CREATE UNIQUE INDEX "meter_sample_station_id_evse_id_timestamp_measurand_phas_ca233fa" ON "meter_sample" ("station_id", "evse_id", "timestamp", "measurand", "phase", "location", "context");

CREATE INDEX "meter_sample_transaction_id" ON "meter_sample" ("transaction_id");

CREATE INDEX "one_time_code_phone_created_at" ON "one_time_code" ("phone", "created_at");

CREATE INDEX "operator_setting_station_id" ON "operator_setting" ("station_id");

CREATE UNIQUE INDEX "operator_setting_station_id_key" ON "operator_setting" ("station_id", "key");

CREATE UNIQUE INDEX "owner_email" ON "owner" ("email");

CREATE UNIQUE INDEX "owner_phone" ON "owner" ("phone");

CREATE INDEX "policy_change_station_id" ON "policy_change" ("station_id");

CREATE INDEX "policy_change_station_id_at" ON "policy_change" ("station_id", "at");

CREATE INDEX "reservation_station_id" ON "reservation" ("station_id");

CREATE INDEX "reservation_transaction_id" ON "reservation" ("transaction_id");

CREATE INDEX "setting_refusal_station_id" ON "setting_refusal" ("station_id");

CREATE UNIQUE INDEX "setting_refusal_station_id_key_value" ON "setting_refusal" ("station_id", "key", "value");

CREATE INDEX "station_deviation_station_id" ON "station_deviation" ("station_id");

CREATE UNIQUE INDEX "station_deviation_station_id_action_kind_path" ON "station_deviation" ("station_id", "action", "kind", "path");

CREATE INDEX "station_event_station_id" ON "station_event" ("station_id");

CREATE INDEX "station_event_station_id_action_received_at" ON "station_event" ("station_id", "action", "received_at");

CREATE INDEX "station_owner_id" ON "station" ("owner_id");

CREATE INDEX "station_setting_station_id" ON "station_setting" ("station_id");

CREATE UNIQUE INDEX "station_setting_station_id_key" ON "station_setting" ("station_id", "key");

CREATE INDEX "traffic_connection_station_id_opened_at" ON "traffic_connection" ("station_id", "opened_at");

CREATE INDEX "traffic_counter_period_period_start" ON "traffic_counter" ("period", "period_start");

CREATE UNIQUE INDEX "traffic_counter_station_id_period_period_start_action_di_d5f209a" ON "traffic_counter" ("station_id", "period", "period_start", "action", "direction", "layer");

CREATE INDEX "transaction_event_record_transaction_id" ON "transaction_event_record" ("transaction_id");

CREATE UNIQUE INDEX "transaction_event_record_transaction_id_seq_no_event_typ_8972ea0" ON "transaction_event_record" ("transaction_id", "seq_no", "event_type", "timestamp", "trigger_reason");

CREATE INDEX "transaction_station_id" ON "transaction" ("station_id");

CREATE INDEX "transaction_station_id_evse_id_started_at" ON "transaction" ("station_id", "evse_id", "started_at");

CREATE UNIQUE INDEX "transaction_station_id_station_tx_id_generation" ON "transaction" ("station_id", "station_tx_id", "generation");
