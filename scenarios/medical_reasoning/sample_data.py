"""The shipped medical-reasoning sample: 160 rows generated from a hand-written table of 32
conditions, in the columns of FreedomIntelligence/medical-o1-reasoning-SFT (Question, Complex_CoT,
Response), so the offline run takes the same column-detection path as the hub dataset.

Deterministic: `python -m tunecrew.scenarios.medical_reasoning.sample_data` rewrites
data/sample.jsonl byte for byte. Textbook-level teaching cases, not clinical advice.
"""

from __future__ import annotations

from pathlib import Path

from tunecrew.tools.rows import write_jsonl

SAMPLE = Path(__file__).parent / "data" / "sample.jsonl"

# (name, age, sex, symptoms, findings, clue, differential, diagnosis, investigation, next step)
CONDITIONS: tuple[tuple[str, ...], ...] = (
    ("appendicitis", "19", "man",
     "periumbilical pain that moved to the right lower quadrant over 12 hours, with anorexia and nausea",
     "Temperature is 38.1 °C, there is tenderness and rebound "
     "at McBurney's point, and the white cell count is 14,000/µL",
     "Pain that starts around the umbilicus and settles in the right iliac fossa, "
     "with local peritonism and fever, is the classic sequence of an inflamed appendix",
     "The urinalysis is normal, which argues against ureteric colic or a urinary infection",
     "Acute appendicitis", "CT of the abdomen and pelvis with contrast",
     "Laparoscopic appendectomy with intravenous antibiotics"),
    ("stemi", "62", "man", "crushing substernal chest pain radiating to the left arm for 40 minutes, with sweating",
     "The ECG shows ST elevation in leads II, III and aVF",
     "Ischaemic-sounding pain with ST elevation in the inferior leads means an occluded coronary artery",
     "Blood pressure is equal in both arms and the pain is not tearing, so aortic dissection is unlikely",
     "Inferior ST-elevation myocardial infarction", "Serial high-sensitivity troponin",
     "Aspirin and emergency primary percutaneous coronary intervention"),
    ("pe", "34", "woman",
     "sudden pleuritic chest pain and breathlessness after a "
     "long-haul flight; she takes the combined oral contraceptive pill",
     "Heart rate is 118, oxygen saturation 90% on air, the lungs are clear and the left calf is swollen",
     "Hypoxia with clear lungs, tachycardia and a swollen calf after immobility "
     "and oestrogen exposure point to a clot that has travelled to the lungs",
     "A clear chest and no fever make pneumonia unlikely",
     "Pulmonary embolism", "CT pulmonary angiography", "Anticoagulation with low-molecular-weight heparin"),
    ("dka", "17", "woman", "polyuria, vomiting, abdominal pain and deep rapid breathing; she has type 1 diabetes",
     "Glucose is 480 mg/dL, arterial pH 7.12, bicarbonate 9 mmol/L, and urine ketones are strongly positive",
     "Hyperglycaemia with a high anion gap metabolic acidosis and ketones in a type 1 diabetic is insulin deficiency",
     "The acidosis and ketones separate this from a hyperosmolar hyperglycaemic state",
     "Diabetic ketoacidosis", "Arterial blood gas with serum ketones and electrolytes",
     "Intravenous fluids and an insulin infusion with potassium replacement"),
    ("meningitis", "20", "man",
     "fever, severe headache, neck stiffness and photophobia; he lives in a university dormitory",
     "Kernig's sign is positive and there is a non-blanching petechial rash on the legs",
     "Fever with meningism and a petechial rash in a young adult living "
     "in close quarters suggests meningococcal infection of the meninges",
     "Viral meningitis would not explain the petechial rash and the speed of the illness",
     "Bacterial meningitis", "Lumbar puncture with cerebrospinal fluid analysis and culture",
     "Immediate intravenous ceftriaxone after blood cultures"),
    ("ectopic", "28", "woman", "seven weeks of amenorrhoea, lower abdominal pain and vaginal spotting",
     "Serum beta-hCG is 2,500 IU/L and transvaginal ultrasound shows an empty uterus with an adnexal mass",
     "A positive pregnancy test above the discriminatory level with "
     "no intrauterine pregnancy means the pregnancy is elsewhere",
     "A threatened miscarriage would show a gestational sac inside the uterus",
     "Ectopic pregnancy", "Transvaginal ultrasound with serial beta-hCG",
     "Urgent gynaecology review for laparoscopic salpingectomy"),
    ("hypothyroid", "45", "woman", "tiredness, weight gain, cold intolerance and constipation over several months",
     "Her skin is dry, the pulse is 54 and ankle reflexes relax slowly; TSH is high and free T4 is low",
     "A slowed metabolism with a high TSH and low T4 is primary thyroid failure, most often autoimmune",
     "Depression could cause tiredness but not the bradycardia, slow reflexes and abnormal thyroid tests",
     "Primary hypothyroidism due to Hashimoto's thyroiditis", "TSH and free T4 with anti-TPO antibodies",
     "Levothyroxine replacement"),
    ("graves", "32", "woman", "weight loss despite a good appetite, palpitations, heat intolerance and a tremor",
     "She has exophthalmos and a diffuse smooth goitre; TSH is suppressed and free T4 is high",
     "Hyperthyroidism with eye signs and a diffuse goitre is autoimmune stimulation of the TSH receptor",
     "A toxic nodule would give a single lump, and thyroiditis would not cause exophthalmos",
     "Graves' disease", "TSH receptor antibodies", "A beta-blocker and carbimazole"),
    ("iron", "38", "woman", "fatigue, breathlessness on stairs and heavy menstrual periods; she craves ice",
     "Conjunctivae are pale and the nails are spoon-shaped; haemoglobin is 9.1 g/dL with an MCV of 68 fL",
     "A microcytic anaemia with pica, koilonychia and ongoing menstrual loss is iron deficiency",
     "Thalassaemia trait would not explain the heavy losses and usually gives a normal or high red cell count",
     "Iron deficiency anaemia", "Serum ferritin", "Oral iron and investigation of the menorrhagia"),
    ("b12", "66", "woman", "tiredness, numbness in both feet and an unsteady gait",
     "Her tongue is smooth and red, vibration sense is reduced at the ankles, and the MCV is 112 fL",
     "A macrocytic anaemia with glossitis and dorsal column signs is "
     "vitamin B12 deficiency, in an older woman usually autoimmune",
     "Folate deficiency causes macrocytosis but not the neuropathy",
     "Pernicious anaemia", "Serum vitamin B12 and intrinsic factor antibodies", "Intramuscular hydroxocobalamin"),
    ("pneumonia", "70", "man", "three days of fever, cough with rust-coloured sputum and right-sided pleuritic pain",
     "There are crackles and bronchial breathing at the right base; he is alert with a respiratory rate of 24",
     "Fever with a productive cough and focal consolidation signs is a lobar pneumonia, typically pneumococcal",
     "Pulmonary embolism would not give purulent sputum and bronchial breathing",
     "Community-acquired pneumonia", "Chest X-ray", "Antibiotics chosen by CURB-65 severity"),
    ("asthma", "22", "woman", "wheeze, night-time cough and breathlessness after cold air or exercise",
     "There is a widespread expiratory wheeze and her peak flow is 55% of predicted",
     "Episodic, variable airflow obstruction triggered by cold air and exercise in a young non-smoker is asthma",
     "COPD is unlikely in a 22-year-old who has never smoked",
     "Acute asthma exacerbation", "Spirometry with bronchodilator reversibility",
     "Inhaled salbutamol and oral prednisolone"),
    ("copd", "68", "man",
     "worsening breathlessness and more purulent sputum for four days; he has smoked for 50 pack-years",
     "The chest is hyperinflated with a prolonged expiration and scattered wheeze",
     "Chronic fixed airflow limitation in a heavy smoker, now with increased sputum purulence, is a COPD flare",
     "Heart failure is less likely without raised venous pressure or oedema",
     "Acute exacerbation of COPD", "Spirometry showing an FEV1/FVC ratio below 0.7",
     "Nebulised bronchodilators, oral prednisolone and antibiotics"),
    ("heart-failure", "72", "woman", "breathlessness on exertion, needing three pillows at night and swollen ankles",
     "The jugular venous pressure is raised, there are fine crackles at both bases and pitting oedema to the knees",
     "Orthopnoea, a raised JVP, basal crackles and oedema together mean fluid overload from a failing ventricle",
     "Nephrotic syndrome would not raise the venous pressure",
     "Congestive heart failure", "Echocardiography with BNP", "Intravenous furosemide"),
    ("af", "75", "man", "palpitations and light-headedness for a day",
     "The pulse is irregularly irregular at 130 per minute and the ECG shows no P waves",
     "An irregularly irregular rhythm without P waves is atrial fibrillation",
     "Atrial flutter would show regular sawtooth flutter waves",
     "Atrial fibrillation with rapid ventricular response", "12-lead ECG",
     "Rate control and anticoagulation guided by CHA2DS2-VASc"),
    ("stroke", "69", "man", "sudden weakness of the right arm and slurred speech that began one hour ago",
     "He has a right-sided hemiparesis and an expressive aphasia; glucose is normal",
     "A sudden focal deficit matching the left middle cerebral artery territory is a stroke until proven otherwise",
     "Hypoglycaemia has been excluded, and a seizure would not explain a persisting aphasia without a convulsion",
     "Acute ischaemic stroke", "Non-contrast CT of the head",
     "Intravenous thrombolysis with alteplase if haemorrhage is excluded"),
    ("sah", "48", "woman",
     "a sudden, worst-ever headache that peaked within a minute during exercise, followed by vomiting",
     "She has neck stiffness without fever and no focal deficit",
     "A thunderclap headache with meningism and no fever is "
     "bleeding into the subarachnoid space, usually from an aneurysm",
     "Migraine does not peak within a minute, and meningitis would bring fever",
     "Subarachnoid haemorrhage", "Non-contrast CT of the head, then lumbar puncture for xanthochromia if negative",
     "Urgent neurosurgical referral with CT angiography"),
    ("migraine", "26", "woman",
     "recurrent one-sided throbbing headaches with nausea and photophobia, preceded by zigzag lights",
     "Neurological examination between attacks is normal",
     "Stereotyped unilateral throbbing headaches with nausea and a "
     "visual aura and a normal examination meet the criteria for migraine",
     "There are no red flags such as a thunderclap onset, fever or focal signs",
     "Migraine with aura", "No imaging: the diagnosis is clinical",
     "A triptan for attacks and avoiding oestrogen-containing contraception"),
    ("pyelonephritis", "30", "woman", "fever, rigors, left flank pain and burning on passing urine",
     "There is costovertebral angle tenderness and the urine dipstick is positive for nitrites and leucocytes",
     "Urinary symptoms with fever and loin tenderness mean the infection has ascended to the kidney",
     "Simple cystitis would not cause fever and flank pain",
     "Acute pyelonephritis", "Urine culture", "Antibiotics such as ciprofloxacin"),
    ("renal-colic", "40", "man", "severe colicky pain from the right loin to the groin; he cannot keep still",
     "The urine dipstick shows blood and he is afebrile",
     "Colicky loin-to-groin pain with haematuria in a restless patient is a stone in the ureter",
     "Appendicitis patients lie still, and the absence of fever argues against an obstructed infected kidney",
     "Ureteric colic from a kidney stone", "Non-contrast CT of the kidneys, ureters and bladder",
     "NSAID analgesia and tamsulosin for a small stone"),
    ("pancreatitis", "50", "man",
     "severe epigastric pain radiating to the back with vomiting after a weekend of heavy drinking",
     "The epigastrium is tender and serum lipase is five times the upper limit of normal",
     "Epigastric pain through to the back with a lipase over three times normal after alcohol is inflamed pancreas",
     "A perforated ulcer would show free air and a rigid abdomen",
     "Acute pancreatitis", "Serum lipase", "Aggressive intravenous fluids and analgesia"),
    ("cholecystitis", "45", "woman", "constant right upper quadrant pain for a day after a fatty meal, with fever",
     "Murphy's sign is positive and the white cell count is raised",
     "Persistent right upper quadrant pain with fever and a positive Murphy's sign is an inflamed gallbladder",
     "Biliary colic settles within hours and does not cause fever",
     "Acute cholecystitis", "Right upper quadrant ultrasound",
     "Intravenous antibiotics and early laparoscopic cholecystectomy"),
    ("duodenal-ulcer", "42", "man", "burning epigastric pain that eases with meals and wakes him at night",
     "There is mild epigastric tenderness and a urea breath test is positive",
     "Pain relieved by food and nocturnal pain with Helicobacter pylori infection is a duodenal ulcer",
     "Gastric ulcer pain is usually worse, not better, with food",
     "Duodenal ulcer due to Helicobacter pylori", "Urea breath test or upper endoscopy",
     "Eradication therapy with a proton pump inhibitor, clarithromycin and amoxicillin"),
    ("coeliac", "24", "woman",
     "chronic diarrhoea, bloating and weight loss, with an itchy blistering rash on the elbows",
     "She has iron deficiency anaemia and the rash looks like dermatitis herpetiformis",
     "Malabsorption with iron deficiency and dermatitis herpetiformis is gluten-sensitive enteropathy",
     "Irritable bowel syndrome would not cause weight loss or anaemia",
     "Coeliac disease", "Anti-tissue transglutaminase IgA antibodies", "A lifelong gluten-free diet"),
    ("dvt", "55", "man", "a painful swollen left calf five days after knee replacement surgery",
     "The left calf is 3 cm larger than the right with pitting oedema",
     "Unilateral leg swelling after major orthopaedic surgery is a deep vein thrombosis until proven otherwise",
     "A ruptured Baker's cyst is possible but the recent surgery makes thrombosis more likely",
     "Deep vein thrombosis", "Compression duplex ultrasound of the leg veins",
     "Anticoagulation with a direct oral anticoagulant"),
    ("septic-arthritis", "60", "man", "an acutely hot, swollen right knee with fever; he cannot bear weight",
     "The knee has a large effusion and any movement is very painful",
     "A single hot swollen joint with fever is an infected joint until aspiration proves otherwise",
     "Gout can look identical, which is why fluid must be examined",
     "Septic arthritis", "Joint aspiration with synovial fluid Gram stain and culture",
     "Intravenous antibiotics and joint washout"),
    ("gout", "55", "man", "sudden severe pain in the big toe overnight after a heavy evening of beer and red meat",
     "The first metatarsophalangeal joint is red, hot and exquisitely tender; he is afebrile",
     "Acute monoarthritis of the first MTP joint after purine and alcohol excess is urate crystal disease",
     "Septic arthritis is less likely without fever, though it should be excluded if in doubt",
     "Acute gout", "Joint aspiration showing negatively birefringent needle-shaped crystals", "An NSAID or colchicine"),
    ("ra", "40", "woman",
     "painful swollen knuckles and finger joints on both hands with morning stiffness lasting two hours",
     "The MCP and PIP joints are symmetrically swollen and tender",
     "A symmetrical small-joint inflammatory polyarthritis with long morning stiffness is rheumatoid arthritis",
     "Osteoarthritis affects the DIP joints and causes short morning stiffness",
     "Rheumatoid arthritis", "Anti-CCP antibodies and rheumatoid factor", "Methotrexate"),
    ("t2dm", "52", "man", "thirst, passing large volumes of urine and tiredness; he is obese",
     "HbA1c is 8.2% and there are no ketones in the urine",
     "Osmotic symptoms with a raised HbA1c in an obese adult without ketosis is insulin resistance",
     "Type 1 diabetes is less likely without weight loss or ketones",
     "Type 2 diabetes mellitus", "Repeat HbA1c", "Lifestyle change and metformin"),
    ("addison", "35", "woman", "fatigue, weight loss, salt craving and dizziness on standing",
     "Her skin and gums are hyperpigmented, blood pressure is low, sodium is low and potassium high",
     "Hyperpigmentation with hyponatraemia, hyperkalaemia and postural hypotension is failure of the adrenal cortex",
     "Secondary adrenal insufficiency would not cause hyperpigmentation or hyperkalaemia",
     "Primary adrenal insufficiency (Addison's disease)", "Short Synacthen test", "Hydrocortisone and fludrocortisone"),
    ("tension-pneumothorax", "23", "man", "sudden breathlessness and chest pain after a stab wound to the left chest",
     "He is hypotensive, the trachea is deviated to the right and breath sounds are absent on the left",
     "Absent breath sounds with tracheal deviation away from the "
     "injured side and shock is air under pressure in the pleural space",
     "Cardiac tamponade causes shock but not tracheal deviation or absent breath sounds",
     "Tension pneumothorax", "None before treatment: it is a clinical diagnosis",
     "Immediate needle decompression followed by a chest drain"),
    ("anaphylaxis", "29", "woman", "lip swelling, hives and wheeze minutes after eating a dish containing peanuts",
     "Blood pressure is 78/40 and there is an audible stridor",
     "Rapid-onset skin, airway and circulatory involvement after an allergen exposure is anaphylaxis",
     "Isolated urticaria would not cause hypotension or stridor",
     "Anaphylaxis", "Clinical diagnosis, with serum tryptase afterwards", "Intramuscular adrenaline 0.5 mg"),
)

SETTINGS = ("presents to the emergency department", "is seen in the clinic", "comes to her or his general practitioner",
            "is brought in by ambulance", "presents to urgent care")
# (question, answer field, age offset); five rows per condition.
QUESTIONS = (
    ("What is the most likely diagnosis?", "diagnosis", 0),
    ("Which condition best explains this presentation?", "diagnosis", 7),
    ("What investigation would best confirm the diagnosis?", "investigation", -3),
    ("What is the most appropriate next step in management?", "step", 4),
    ("What is the underlying diagnosis?", "diagnosis", 11),
)
OPENERS = ("Okay, let's think this through.", "Alright, let me work through this.", "Hmm, let's piece this together.",
           "Let's see what is going on here.", "Okay, so let's start with the story.")


def _lower_first(text: str) -> str:
    """Mid-sentence case, leaving acronyms (CT, TSH) and eponyms (Graves') alone."""
    first = text.split()[0]
    if text[:2] == text[:2].upper() or first.endswith(("'", "'s")):
        return text
    return text[0].lower() + text[1:]


def rows() -> list[dict]:
    out = []
    for c_index, (_, age, sex, symptoms, findings, clue, ddx, diagnosis, test, step) in enumerate(CONDITIONS):
        for q_index, (question, kind, offset) in enumerate(QUESTIONS):
            years = int(age) + offset
            person = sex if years >= 18 else {"man": "boy", "woman": "girl"}[sex]
            article = "An" if str(years).startswith("8") or years in (11, 18) else "A"
            setting = SETTINGS[(c_index + q_index) % len(SETTINGS)].replace("her or his",
                                                                            "her" if sex == "woman" else "his")
            prompt = f"{article} {years}-year-old {person} {setting} with {symptoms}. {findings}. {question}"
            answer = {"diagnosis": diagnosis, "investigation": test, "step": step}[kind]
            tail = {"diagnosis": f"So the most likely diagnosis is {_lower_first(diagnosis)}.",
                    "investigation": f"The diagnosis is {_lower_first(diagnosis)}, and the investigation that best "
                                     f"confirms it is {_lower_first(test)}.",
                    "step": f"The diagnosis is {_lower_first(diagnosis)}, "
                            f"so the next step is {_lower_first(step)}."}[kind]
            cot = (f"{OPENERS[(c_index + q_index) % len(OPENERS)]} We have {article.lower()} {years}-year-old "
                   f"{person} with {symptoms}. {findings}. {clue}. {ddx}. {tail}")
            out.append({"Question": prompt, "Complex_CoT": cot, "Response": f"{answer}."})
    return out


if __name__ == "__main__":
    print(write_jsonl(rows(), SAMPLE))
