//! Training or loading an SAE from the explorer, for a workspace that has none yet.

use super::*;

impl Explorer {
    pub(super) fn no_index_ui(&mut self, ui: &mut egui::Ui) {
        if self.sae.is_none() {
            self.new_sae_ui(ui);
            return;
        }
        ui.label("No feature index yet: it lists every feature's top images and statistics.");
        let running = self.jobs.iter().any(|j| j.state() == JobState::Running);
        if !running
            && ui
                .button("Build index")
                .on_hover_text("Stream the activations through the SAE (resumable)")
                .clicked()
        {
            let request = crate::ops::analyse::IndexRequest {
                device: self.device,
                workspace: self.ws.dir.clone(),
                sae: self.home.clone(),
                options: IndexOptions::default(),
            };
            self.push_job(BackgroundJob::spawn("Index", ui.ctx(), move |job| {
                let r = crate::ops::analyse::build_index(&request, job)?;
                Ok(format!("{} images, {} features", r.images, r.features))
            }));
        }
    }

    /// A workspace with activations but no SAE: train one (or load a file) here, then it is
    /// indexed and its features labelled from the classes, as a new workspace's would be.
    pub(super) fn new_sae_ui(&mut self, ui: &mut egui::Ui) {
        ui.label(
            "This workspace has activations but no SAE yet. Train one here (it is then indexed \
             and its features labelled from the class folders), or load an SAE file.",
        );
        self.sae_form_ui(ui);
    }

    /// The form that trains a TopK SAE or loads an SAE file into the workspace (indexed and
    /// labelled from the classes, then made active).
    pub(super) fn sae_form_ui(&mut self, ui: &mut egui::Ui) {
        let form = &mut self.form.new_sae;
        let mut sae_ok = true;
        egui::Grid::new("new_sae").num_columns(2).show(ui, |ui| {
            labelled_path_row(
                ui,
                &self.picker,
                Pick::File,
                "SAE file (optional)",
                &mut form.sae_file,
                "SAELens, saev, dictionary_learning, sparsify or OpenAI layout",
            );
            if form.sae_file.trim().is_empty() {
                crate::create::new_topk_fields(ui, &mut form.d_sae, &mut form.k, &mut form.mtokens);
                ui.end_row();
            } else {
                ui.label("");
                let sae = crate::live_hint::live_hint(
                    ui,
                    "new_sae_file",
                    &form.sae_file,
                    crate::live_hint::describe_sae,
                );
                // Unknown (still checking) counts as fine; a known failure is shown above.
                sae_ok = !matches!(sae, Some(Err(_)));
                ui.end_row();
            }
        });
        let file = form.sae_file.trim();
        let (title, tip) = if file.is_empty() {
            (
                "Train SAE",
                "Train, index and label (resumable; cancel keeps the progress)",
            )
        } else {
            (
                "Load SAE",
                "Copy the SAE into the workspace, then index and label it",
            )
        };
        let running = self.jobs.iter().any(|j| j.state() == JobState::Running);
        if running
            || !ui
                .add_enabled(sae_ok, egui::Button::new(title))
                .on_hover_text(tip)
                .clicked()
        {
            return;
        }
        let train = crate::create::topk_options(form.d_sae, form.k, form.mtokens);
        let request = crate::ops::create::SaeRequest {
            device: self.device,
            workspace: self.ws.dir.clone(),
            sae_file: (!file.is_empty()).then(|| file.into()),
            train,
        };
        self.push_job(BackgroundJob::spawn(title, ui.ctx(), move |job| {
            let r = crate::ops::create::add_sae(&request, job)?;
            if r.already_trained {
                // Said, not silent: the SAE was there, so nothing was trained.
                return Ok(format!(
                    "{} has these settings already: nothing trained, it is the one explored now",
                    r.sae
                ));
            }
            Ok(format!(
                "{}: {} features, {} labelled from classes",
                r.sae, r.features, r.labelled_from_classes
            ))
        }));
    }

    /// After a job: the SAE a workspace without one now has (made active by the job), with its
    /// labels; the index is loaded by the caller.
    pub(super) fn adopt_new_sae(&mut self) {
        let Ok(ws) = Workspace::open(&self.ws.dir) else {
            return;
        };
        let Ok(home) = ws.sae_home(None) else {
            return;
        };
        match workspace_sae(&ws, Some(&home)).and_then(|sae| Ok((sae, Labels::load(&home)?))) {
            Ok((sae, labels)) => {
                self.sae = Some(sae);
                self.labels = labels;
                self.home = Some(home);
                self.ws = ws;
            }
            Err(e) => self.error = Some(crate::Failure::new(e)),
        }
    }
}
