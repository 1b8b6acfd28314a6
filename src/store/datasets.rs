//! Registered data sets: one row per name with its label file, image folder and summary.

use rusqlite::{params, OptionalExtension};

use super::rows::dataset_from_row;
use super::*;

impl Store {
    /// Registers a data set under a new name (`created_at` is set here).
    pub fn add_dataset(
        &self,
        name: &str,
        label_file: &str,
        image_dir: &str,
        split_files: Option<&SplitFiles>,
        summary: &serde_json::Value,
    ) -> Result<()> {
        self.room_for_more()?;
        let result = self.conn().execute(
            "INSERT INTO datasets (name, label_file, image_dir, created_at, summary, val_label_file, test_label_file) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                name,
                label_file,
                image_dir,
                now(),
                summary.to_string(),
                split_files.map(|f| &f.val),
                split_files.map(|f| &f.test)
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(Error::DatasetExists(name.into()))
            }
            Err(source) => Err(self.wrap()(source)),
        }
    }

    /// Replaces a registered data set's summary (e.g. once its cache is built).
    pub fn set_dataset_summary(&self, name: &str, summary: &serde_json::Value) -> Result<()> {
        self.room_for_more()?;
        let changed = self
            .conn()
            .execute(
                "UPDATE datasets SET summary = ?2 WHERE name = ?1",
                params![name, summary.to_string()],
            )
            .map_err(self.wrap())?;
        if changed == 0 {
            return Err(Error::UnknownDataset(name.into()));
        }
        Ok(())
    }

    pub fn dataset(&self, name: &str) -> Result<Option<DatasetRow>> {
        self.conn()
            .query_row(
                "SELECT name, label_file, image_dir, created_at, summary, val_label_file, test_label_file FROM datasets WHERE name = ?1",
                [name],
                dataset_from_row,
            )
            .optional()
            .map_err(self.wrap())
    }

    /// Registered data sets, by name.
    pub fn datasets(&self) -> Result<Vec<DatasetRow>> {
        let conn = self.conn();
        let mut statement = conn
            .prepare("SELECT name, label_file, image_dir, created_at, summary, val_label_file, test_label_file FROM datasets ORDER BY name")
            .map_err(self.wrap())?;
        let rows = statement
            .query_map([], dataset_from_row)
            .map_err(self.wrap())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.wrap())?;
        Ok(rows)
    }

    /// Forgets a data set (its files are the user's and stay where they are).
    pub fn delete_dataset(&self, name: &str) -> Result<()> {
        let changed = self
            .conn()
            .execute("DELETE FROM datasets WHERE name = ?1", [name])
            .map_err(self.wrap())?;
        if changed == 0 {
            return Err(Error::UnknownDataset(name.into()));
        }
        Ok(())
    }
}
