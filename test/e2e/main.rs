//! End-to-end suite: private containerd (1.7 or 2.1) and dockerd instances
//! driven through the real clients (`ctr`, `docker`), against the runtime
//! named by `LAZARUS_TEST_RUNTIME`. See test/README.md.

mod apps;
mod cleanup;
mod cmd;
mod config;
mod cri;
mod harness;
mod leaks;
mod netns;
mod tty;

mod api_options_tests;
mod api_tests;
mod app_tests;
mod archive_tests;
mod checkpoint_tests;
mod cli_tests;
mod concurrency_tests;
mod corrupt_tests;
mod cri_exec_tests;
mod cri_mounts_tests;
mod cri_tests;
mod criu_tests;
mod ctr_tests;
mod docker_tests;
mod errors_tests;
mod exec_confinement_tests;
mod fault_tests;
mod group_tests;
mod image_dir_tests;
mod image_path_tests;
mod migrate_address_tests;
mod migrate_filter_tests;
mod migrate_postcopy_tests;
mod migrate_serve_tests;
mod migrate_stopcopy_tests;
mod migrate_tests;
mod pod_tests;
mod restart_tests;
mod restore_image_tests;
mod restore_limits_tests;
mod security_tests;
mod state_tests;
